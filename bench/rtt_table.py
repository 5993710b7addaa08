#!/usr/bin/python3
"""The rounds-to-target table of bench/rtt_bench.sh, as markdown (and plots).

    bench/rtt_table.py OUT_DIR --algorithms "fedavg fedprox" --schemes "iid shards2"
                       --seeds "1 2 3" [--target 0.8] [--rounds 30] [--no-plot]
                       [--profiles "none lan 4g deadline-dropout"]

Reads OUT_DIR/<algorithm>-<scheme>-s<seed>/rounds.csv and summary.json. The
rounds and bytes to --target come from rounds.csv (so the same runs give the
table at any target); where --target is the runs' own target_accuracy they
must equal summary.json's rounds_to_target and bytes_to_target, else the run
is reported and left out. Prints per algorithm and partition scheme:
  reached          seeds whose global model reached the target
  rounds           rounds to target: mean +- sample std over the seeds that
                   reached it, or "not reached in N"
  MB to target     payload bytes (bytes_down + bytes_up) up to and including
                   the target round, mean over those seeds, in 10^6 bytes
  MB per round     payload bytes per round over the whole run, mean over seeds
  s to target      sum of round_seconds up to the target round (the server's
                   rounds; start-up and data loading excluded), mean
  final accuracy   after the last round (or after --accuracy-round N), mean
                   +- std over all seeds
  vs fedavg        rounds to target relative to FedAvg's under the same scheme
                   (when both reached it with every seed)
With python3-matplotlib it also writes OUT_DIR/rtt.png (rounds to target per
scheme and algorithm) and OUT_DIR/rtt-accuracy.png (mean test accuracy per
round, one panel per scheme, the target dashed).

With --profiles (simulated networks, runs in ...-s<seed>-<profile>/; "none"
is the plain run) a second table gives per algorithm, scheme and profile the
simulated seconds to target (the sum of rounds.csv's simulated_seconds up to
the target round, checked against summary.json's
simulated_seconds_to_target), the total simulated seconds and the share of
selected clients dropped, and the plots rtt-network.png (simulated seconds to
target) and rtt-network-accuracy.png (accuracy against simulated time).
"""
import argparse
import csv
import json
import math
import os
import sys


def fail(message):
    sys.exit("rtt_table: error: " + message)


def label(scheme):
    for prefix, name in (("dirichlet", "dirichlet"), ("shards", "shards"), ("quantity", "quantity"),
                         ("noise", "feature-noise")):
        if scheme.startswith(prefix) and scheme != prefix:
            return "%s(%s)" % (name, scheme[len(prefix):])
    return scheme


def mean_std(values):
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def read_run(directory, target):
    try:
        with open(os.path.join(directory, "summary.json")) as handle:
            summary = json.load(handle)
        with open(os.path.join(directory, "rounds.csv"), newline="") as handle:
            rounds = list(csv.DictReader(handle))
    except (OSError, ValueError) as error:
        return None, str(error)
    if summary.get("status") != "completed":
        return None, "status %s" % summary.get("status")
    # Rounds and bytes to `target` from rounds.csv, so that one set of runs
    # gives the table at any target; summary.json's figures (made for its
    # own target_accuracy) must agree with them.
    target_round, target_bytes, seconds, moved, elapsed = None, None, None, 0, 0.0
    simulated, simulated_to_target, clock = 0.0, None, []
    selected = dropped = 0
    for r in rounds:
        moved += int(r["bytes_down"]) + int(r["bytes_up"])
        elapsed += float(r["round_seconds"])
        simulated += float(r.get("simulated_seconds") or 0.0)
        clock.append(simulated)
        dropped += int(r.get("dropped") or 0)
        selected += int(r["participants"]) + int(r.get("dropped") or 0)
        if target_round is None and float(r["test_accuracy"]) >= target:
            target_round, target_bytes, seconds = int(r["round"]), moved, elapsed
            simulated_to_target = simulated
    if summary.get("target_accuracy") == target and (
            summary.get("rounds_to_target") != target_round or
            summary.get("bytes_to_target") != target_bytes):
        return None, ("summary.json says %s rounds / %s bytes to %g, rounds.csv %s / %s" % (
            summary.get("rounds_to_target"), summary.get("bytes_to_target"), target,
            target_round, target_bytes))
    own = summary.get("simulated_seconds_to_target")
    if summary.get("target_accuracy") == target and own is not None and (
            simulated_to_target is None or abs(own - simulated_to_target) > 1e-9 * max(1.0, own)):
        return None, "summary.json says %s simulated seconds to %g, rounds.csv %s" % (
            own, target, simulated_to_target)
    return {
        "simulated_to_target": simulated_to_target,
        "simulated_total": simulated,
        "clock": clock,
        "dropped_share": dropped / selected if selected else 0.0,
        "rounds_to_target": target_round,
        "bytes_to_target": target_bytes,
        "seconds_to_target": seconds,
        "final_accuracy": summary.get("final_accuracy"),
        "accuracy": [float(r["test_accuracy"]) for r in rounds],
        "rounds_run": summary.get("rounds_run"),
        "mb_per_round": moved / 1e6 / len(rounds) if rounds else None,
    }, None


def collect(out_dir, algorithms, schemes, seeds, target, profile="none"):
    results, problems = {}, []
    suffix = "" if profile == "none" else "-" + profile
    for scheme in schemes:
        for algorithm in algorithms:
            runs = []
            for seed in seeds:
                directory = os.path.join(out_dir, "%s-%s-s%s%s" % (algorithm, scheme, seed, suffix))
                run, problem = read_run(directory, target)
                if run:
                    runs.append(run)
                else:
                    problems.append("%s: %s" % (directory, problem))
            results[(algorithm, scheme)] = runs
    return results, problems


def megabytes(value):
    if value is None:
        return "-"
    return "%.1f" % value if value >= 1.0 else "%.3f" % value


def accuracy_at(run, at_round):
    if at_round is None:
        return run["final_accuracy"]
    if len(run["accuracy"]) < at_round:
        fail("a run has %d rounds, --accuracy-round asks for round %d" % (
            len(run["accuracy"]), at_round))
    return run["accuracy"][at_round - 1]


def table(results, algorithms, schemes, seeds, rounds, at_round=None):
    lines = ["| algorithm | partition | reached | rounds to target | MB to target | MB per round | "
             "s to target | %s | vs fedavg (rounds) |" % (
                 "final accuracy" if at_round is None else "accuracy at round %d" % at_round),
             "|---|---|---:|---|---:|---:|---:|---|---:|"]
    for scheme in schemes:
        baseline = results.get(("fedavg", scheme), [])
        base_rounds = [r["rounds_to_target"] for r in baseline if r["rounds_to_target"]]
        base_mean = mean_std(base_rounds)[0] if baseline and len(base_rounds) == len(seeds) else None
        for algorithm in algorithms:
            runs = results[(algorithm, scheme)]
            reached = [r for r in runs if r["rounds_to_target"]]
            rtt_mean, rtt_std = mean_std([r["rounds_to_target"] for r in reached])
            mb = mean_std([r["bytes_to_target"] / 1e6 for r in reached])[0]
            seconds = mean_std([r["seconds_to_target"] for r in reached])[0]
            final_mean, final_std = mean_std([accuracy_at(r, at_round) for r in runs])
            per_round = mean_std([r["mb_per_round"] for r in runs if r["mb_per_round"] is not None])[0]
            if not runs:
                rounds_text = "no run"
            elif not reached:
                rounds_text = "not reached in %d" % max(r["rounds_run"] for r in runs)
            else:
                rounds_text = "%.1f ± %.1f" % (rtt_mean, rtt_std)
                if len(reached) < len(runs):
                    rounds_text += " (%d of %d seeds; the others not reached in %d)" % (
                        len(reached), len(runs), rounds)
            versus = "-"
            if base_mean and algorithm != "fedavg" and len(reached) == len(seeds):
                versus = "%+.0f%%" % (100.0 * (rtt_mean - base_mean) / base_mean)
            lines.append("| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s |" % (
                algorithm, label(scheme), len(reached), len(runs), rounds_text, megabytes(mb),
                megabytes(per_round),
                "-" if seconds is None else "%.1f" % seconds,
                "-" if final_mean is None else "%.4f ± %.4f" % (final_mean, final_std), versus))
    return "\n".join(lines)


def seconds_text(value):
    if value is None:
        return "-"
    return "%.0f" % value if value >= 100 else "%.1f" % value


def network_table(by_profile, algorithms, schemes, profiles):
    lines = ["| algorithm | partition | network | reached | rounds to target | MB to target | "
             "simulated s to target | simulated s total | dropped | final accuracy |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    for scheme in schemes:
        for algorithm in algorithms:
            for profile in profiles:
                runs = by_profile[profile][(algorithm, scheme)]
                reached = [r for r in runs if r["rounds_to_target"]]
                rtt_mean, rtt_std = mean_std([r["rounds_to_target"] for r in reached])
                mb = mean_std([r["bytes_to_target"] / 1e6 for r in reached])[0]
                sim = mean_std([r["simulated_to_target"] for r in reached])[0]
                total = mean_std([r["simulated_total"] for r in runs])[0]
                dropped = mean_std([r["dropped_share"] for r in runs])[0]
                final_mean, final_std = mean_std([r["final_accuracy"] for r in runs])
                rounds_text = ("no run" if not runs else
                               "not reached in %d" % max(r["rounds_run"] for r in runs)
                               if not reached else "%.1f ± %.1f" % (rtt_mean, rtt_std))
                if reached and len(reached) < len(runs):
                    rounds_text += " (%d of %d seeds)" % (len(reached), len(runs))
                lines.append("| %s | %s | %s | %d/%d | %s | %s | %s | %s | %s | %s |" % (
                    algorithm, label(scheme), profile, len(reached), len(runs), rounds_text,
                    megabytes(mb), seconds_text(sim) if profile != "none" else "-",
                    seconds_text(total) if profile != "none" else "-",
                    "-" if dropped is None else "%.0f%%" % (100.0 * dropped),
                    "-" if final_mean is None else "%.4f ± %.4f" % (final_mean, final_std)))
    return "\n".join(lines)


def plot_network(by_profile, algorithms, schemes, profiles, out_dir, target, rounds):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("rtt_table: no plots (python3-matplotlib is not installed)", file=sys.stderr)
        return []
    profiles = [p for p in profiles if p != "none"]
    if not profiles:
        return []
    written = []
    scheme = schemes[0]
    width = 0.8 / max(1, len(algorithms))
    figure, axes = plt.subplots(figsize=(max(6, 2.2 * len(profiles)), 4))
    ceiling = max([r["simulated_total"] for p in profiles for a in algorithms
                   for r in by_profile[p][(a, scheme)]] + [1.0])
    for index, algorithm in enumerate(algorithms):
        for position, profile in enumerate(profiles):
            runs = by_profile[profile][(algorithm, scheme)]
            reached = [r["simulated_to_target"] for r in runs if r["rounds_to_target"]]
            x = position - 0.4 + width * (index + 0.5)
            color = "C%d" % (index % 10)
            if runs and len(reached) == len(runs):
                axes.bar(x, mean_std(reached)[0], width, color=color,
                         label=algorithm if position == 0 else None)
            else:
                # Not reached: a hatched bar at the run's whole simulated time.
                total = mean_std([r["simulated_total"] for r in runs])[0] or ceiling
                axes.bar(x, total, width, color="none", edgecolor=color, hatch="//",
                         label=algorithm if position == 0 else None)
    axes.set_yscale("log")
    axes.set_xticks(range(len(profiles)), profiles)
    axes.set_ylabel("simulated seconds to %.2f test accuracy" % target)
    axes.set_title("%s: simulated time to target (hatched: not reached in %d rounds, bar = "
                   "the whole run)" % (label(scheme), rounds), fontsize="small")
    axes.legend(fontsize="x-small", ncol=3)
    axes.grid(axis="y", alpha=0.3, which="both")
    figure.tight_layout()
    path = os.path.join(out_dir, "rtt-network.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.append(path)

    figure, panels = plt.subplots(1, len(profiles), figsize=(4.2 * len(profiles), 3.4),
                                  squeeze=False, sharey=True)
    for position, profile in enumerate(profiles):
        axes = panels[0][position]
        for index, algorithm in enumerate(algorithms):
            runs = [r for r in by_profile[profile][(algorithm, scheme)] if r["accuracy"]]
            if not runs:
                continue
            run = runs[0]
            axes.plot(run["clock"], run["accuracy"], color="C%d" % (index % 10), label=algorithm,
                      marker=".", markersize=3)
        axes.axhline(target, color="black", linestyle="--", linewidth=0.8)
        axes.set_xscale("log")
        axes.set_title("%s, %s (first seed)" % (profile, label(scheme)), fontsize="small")
        axes.set_xlabel("simulated seconds")
        axes.grid(alpha=0.3)
        if position == 0:
            axes.set_ylabel("test accuracy")
    panels[0][0].legend(fontsize="x-small")
    figure.tight_layout()
    path = os.path.join(out_dir, "rtt-network-accuracy.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.append(path)
    return written


def plot(results, algorithms, schemes, out_dir, target, rounds):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        print("rtt_table: no plots (python3-matplotlib is not installed)", file=sys.stderr)
        return []
    written = []
    width = 0.8 / max(1, len(algorithms))
    figure, axes = plt.subplots(figsize=(max(6, 1.8 * len(schemes)), 4))
    for index, algorithm in enumerate(algorithms):
        for position, scheme in enumerate(schemes):
            runs = results[(algorithm, scheme)]
            reached = [r["rounds_to_target"] for r in runs if r["rounds_to_target"]]
            x = position - 0.4 + width * (index + 0.5)
            color = "C%d" % (index % 10)
            if reached and len(reached) == len(runs):
                mean, std = mean_std(reached)
                axes.bar(x, mean, width, yerr=std, color=color, capsize=3,
                         label=algorithm if position == 0 else None)
            else:
                # Not reached by every seed: a hatched bar at the round limit.
                axes.bar(x, rounds, width, color="none", edgecolor=color, hatch="//",
                         label=algorithm if position == 0 else None)
                axes.text(x, rounds, "%d/%d" % (len(reached), len(runs)), ha="center",
                          va="bottom", fontsize="x-small")
    axes.set_xticks(range(len(schemes)), [label(s) for s in schemes])
    axes.set_ylabel("rounds to %.2f test accuracy" % target)
    axes.set_title("rounds to target (hatched: not reached by every seed in %d)" % rounds,
                   fontsize="small")
    axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path = os.path.join(out_dir, "rtt.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.append(path)

    columns = min(4, len(schemes))
    lines = math.ceil(len(schemes) / columns)
    figure, panels = plt.subplots(lines, columns, figsize=(4 * columns, 3.2 * lines), squeeze=False,
                                  sharey=True)
    for position, scheme in enumerate(schemes):
        axes = panels[position // columns][position % columns]
        for index, algorithm in enumerate(algorithms):
            curves = [r["accuracy"] for r in results[(algorithm, scheme)] if r["accuracy"]]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            mean = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
            low = [min(c[i] for c in curves) for i in range(length)]
            high = [max(c[i] for c in curves) for i in range(length)]
            steps = list(range(1, length + 1))
            color = "C%d" % (index % 10)
            axes.plot(steps, mean, color=color, label=algorithm)
            axes.fill_between(steps, low, high, color=color, alpha=0.15)
        axes.axhline(target, color="black", linestyle="--", linewidth=0.8)
        axes.set_title(label(scheme), fontsize="small")
        axes.set_xlabel("round")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if position % columns == 0:
            axes.set_ylabel("test accuracy (mean, min-max over seeds)")
    for position in range(len(schemes), lines * columns):
        panels[position // columns][position % columns].axis("off")
    panels[0][0].legend(fontsize="small")
    figure.tight_layout()
    path = os.path.join(out_dir, "rtt-accuracy.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.append(path)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", metavar="OUT_DIR")
    parser.add_argument("--algorithms", required=True)
    parser.add_argument("--schemes", required=True)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--accuracy-round", type=int,
                        help="report the test accuracy after this round instead of the final one "
                             "(to compare runs of different lengths)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--profiles", default="none",
                        help="simulated network profiles of the runs (\"none\": the plain runs)")
    args = parser.parse_args()
    algorithms, schemes, seeds = args.algorithms.split(), args.schemes.split(), args.seeds.split()
    if not algorithms or not schemes or not seeds:
        fail("--algorithms, --schemes and --seeds need at least one value each")
    profiles = args.profiles.split() or ["none"]
    by_profile, problems = {}, []
    for profile in profiles:
        by_profile[profile], missing = collect(args.out_dir, algorithms, schemes, seeds,
                                               args.target, profile)
        problems += missing
    for problem in problems:
        print("rtt_table: run left out: " + problem, file=sys.stderr)
    if "none" in profiles:
        results = by_profile["none"]
        print(table(results, algorithms, schemes, seeds, args.rounds, args.accuracy_round))
        if not args.no_plot:
            for path in plot(results, algorithms, schemes, args.out_dir, args.target, args.rounds):
                print("rtt_table: wrote " + path, file=sys.stderr)
    if profiles != ["none"]:
        print()
        print(network_table(by_profile, algorithms, schemes, profiles))
        if not args.no_plot:
            for path in plot_network(by_profile, algorithms, schemes, profiles, args.out_dir,
                                     args.target, args.rounds):
                print("rtt_table: wrote " + path, file=sys.stderr)


if __name__ == "__main__":
    main()
