#!/usr/bin/env python3
"""Pools kd-start runs (one partition scheme and one seed each) into one table
per scheme: rounds to the target accuracy of FedAvg from the seeded
initialisation ("random"), from the sample-weighted average of the clients'
pre-trained weights ("average") and from the student distilled from their
ensemble ("kd"), and the reduction in rounds and in bytes of the two
consolidated starts against the random one, as mean +- standard deviation
over the seeds (sample standard deviation; 0 with one seed).

    bench/kd_start_aggregate.py [--out PREFIX] RUN_DIR...

Each RUN_DIR holds the kd_start.json and summary.json of one run. A start
that never reached the target within the rounds has no rounds-to-target; the
table then says in how many seeds it did, and a reduction is computed only
over seeds where both starts reached it. Bytes to target include the
consolidation upload (weights for the average, logits for the KD start).
The last line compares the mean reduction of the KD start over every
(scheme, seed) with the study's claim, 60.6% fewer rounds on average
(Alballa et al., arXiv 2402.14922). A second table recomputes, from each
federation's rounds.csv, the KD start's reduction at targets 0.02 below and
above the run's, to show how much the figure depends on the target. Standard
library only.
"""
import csv
import argparse
import collections
import json
import os
import statistics
import sys

STARTS = ("random", "average", "kd")
CLAIM = 60.6


def scheme_label(config):
    p = config["partition"]
    scheme = p["scheme"]
    if scheme in ("dirichlet", "quantity"):
        return "%s(%g)" % (scheme, p["alpha"])
    if scheme == "shards":
        return "shards(%d)" % p["classes_per_client"]
    return scheme


def accuracies(run_dir, sub_dir):
    with open(os.path.join(run_dir, sub_dir, "rounds.csv"), newline="") as f:
        return [float(r["test_accuracy"]) for r in csv.DictReader(f)]


def rounds_to(curve, target):
    for i, accuracy in enumerate(curve):
        if accuracy >= target:
            return i + 1
    return None


def read_runs(dirs):
    runs = []
    for d in dirs:
        with open(os.path.join(d, "kd_start.json")) as f:
            report = json.load(f)
        with open(os.path.join(d, "summary.json")) as f:
            summary = json.load(f)
        starts = {s["start"]: s for s in report["starts"]}
        curves = {s: accuracies(d, starts[s]["run_dir"]) for s in STARTS}
        runs.append({"dir": d, "scheme": scheme_label(summary["config"]),
                     "seed": report["seed"], "target": report["target_accuracy"],
                     "rounds": report["rounds"], "starts": starts, "curves": curves})
    return runs


def mean_std(values):
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values, digits=1, suffix=""):
    m, s = mean_std(values)
    if m is None:
        return "-"
    return "%.*f ± %.*f%s" % (digits, m, digits, s, suffix)


def aggregate(runs):
    by_scheme = collections.OrderedDict()
    for r in runs:
        by_scheme.setdefault(r["scheme"], []).append(r)
    rows, all_kd, all_average = [], [], []
    for scheme, group in by_scheme.items():
        row = {"scheme": scheme, "seeds": len(group), "target": sorted({g["target"] for g in group}),
               "rounds": sorted({g["rounds"] for g in group})}
        for start in STARTS:
            reached = [g["starts"][start]["rounds_to_target"] for g in group
                       if g["starts"][start]["rounds_to_target"]]
            row[start + "_rounds"] = reached
            row[start + "_reached"] = len(reached)
            row[start + "_round0"] = [g["starts"][start]["round0_accuracy"] for g in group]
            row[start + "_final"] = [g["starts"][start]["final_accuracy"] for g in group]
            row[start + "_mb"] = [g["starts"][start]["bytes_to_target"] / 1e6 for g in group
                                  if g["starts"][start]["bytes_to_target"]]
        for start in ("average", "kd"):
            rounds = [g["starts"][start]["reduction_rounds_percent"] for g in group
                      if g["starts"][start]["reduction_rounds_percent"] is not None]
            byte_cut = [g["starts"][start]["reduction_bytes_percent"] for g in group
                        if g["starts"][start]["reduction_bytes_percent"] is not None]
            row[start + "_reduction_rounds"] = rounds
            row[start + "_reduction_bytes"] = byte_cut
        all_kd += row["kd_reduction_rounds"]
        all_average += row["average_reduction_rounds"]
        rows.append(row)
    return rows, all_kd, all_average


DELTAS = (-0.02, 0.0, 0.02)


def sensitivity(runs):
    """Per scheme and target offset: the KD start's reductions in rounds."""
    table = collections.OrderedDict()
    for r in runs:
        for delta in DELTAS:
            target = round(r["target"] + delta, 4)
            random = rounds_to(r["curves"]["random"], target)
            kd = rounds_to(r["curves"]["kd"], target)
            cell = table.setdefault((r["scheme"], delta), {"targets": set(), "cuts": [],
                                                           "missed": 0})
            cell["targets"].add(target)
            if random and kd:
                cell["cuts"].append(100.0 * (random - kd) / random)
            else:
                cell["missed"] += 1
    return table


def markdown(rows, all_kd, all_average, runs):
    lines = []
    lines.append("| scheme | target | seeds | rounds to target: random | average | kd "
                 "| fewer rounds: average | kd | fewer bytes: average | kd "
                 "| round-0 acc: random / average / kd | final acc: random / average / kd |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["seeds"]

        def rounds(start):
            text = fmt(r[start + "_rounds"])
            if r[start + "_reached"] < n:
                text += " (%d/%d reached)" % (r[start + "_reached"], n)
            return text

        def accs(key):
            return " / ".join("%.3f" % statistics.mean(r[s + key]) for s in STARTS)

        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["scheme"], "/".join("%g" % t for t in r["target"]), n,
            rounds("random"), rounds("average"), rounds("kd"),
            fmt(r["average_reduction_rounds"], 1, "%"), fmt(r["kd_reduction_rounds"], 1, "%"),
            fmt(r["average_reduction_bytes"], 1, "%"), fmt(r["kd_reduction_bytes"], 1, "%"),
            accs("_round0"), accs("_final")))
    lines.append("")
    kd_mean, _ = mean_std(all_kd)
    avg_mean, _ = mean_std(all_average)
    lines.append("KD start, fewer rounds than FedAvg from random weights, over %d (scheme, seed) "
                 "runs where both reached the target: %s (study: %.1f%%)" %
                 (len(all_kd), fmt(all_kd, 1, "%"), CLAIM))
    lines.append("Average start, same: %s" % fmt(all_average, 1, "%"))
    missing = sum(1 for r in runs for s in ("random", "kd")
                  if not r["starts"][s]["rounds_to_target"])
    if missing:
        lines.append("%d start(s) of random or kd never reached the target; their runs are "
                     "left out of the reductions." % missing)
    if kd_mean is not None:
        verdict = "agrees with" if abs(kd_mean - CLAIM) <= 15.0 else "does not agree with"
        lines.append("Mean KD reduction %.1f%% %s the study's %.1f%% (agreement taken as within "
                     "15 percentage points)." % (kd_mean, verdict, CLAIM))
    lines.append("")
    lines.append("KD start, fewer rounds than random, at other targets (from rounds.csv):")
    lines.append("")
    lines.append("| scheme | " + " | ".join("target %+.2f" % d for d in DELTAS) + " |")
    lines.append("|---|" + "---|" * len(DELTAS))
    table = sensitivity(runs)
    for scheme in dict.fromkeys(r["scheme"] for r in runs):
        cells = []
        for delta in DELTAS:
            cell = table[(scheme, delta)]
            text = "%s: %s" % ("/".join("%g" % t for t in sorted(cell["targets"])),
                               fmt(cell["cuts"], 1, "%"))
            if cell["missed"]:
                text += " (%d not reached)" % cell["missed"]
            cells.append(text)
        lines.append("| %s | %s |" % (scheme, " | ".join(cells)))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write PREFIX.md and PREFIX.json")
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    runs = read_runs(args.dirs)
    rows, all_kd, all_average = aggregate(runs)
    text = markdown(rows, all_kd, all_average, runs)
    sys.stdout.write(text)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(text)
        for r in runs:
            del r["curves"]
        with open(args.out + ".json", "w") as f:
            json.dump({"rows": rows, "kd_reductions": all_kd, "average_reductions": all_average,
                       "claim_percent": CLAIM, "runs": [r["dir"] for r in runs]}, f, indent=1)


if __name__ == "__main__":
    main()
