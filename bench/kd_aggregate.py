#!/usr/bin/env python3
"""Pools kd-study runs (one seed and one partition scheme each) into one table
per scheme, and compares tuned KD with the best untuned method as the study
does (Alballa et al., arXiv 2402.14922).

    bench/kd_aggregate.py [--out PREFIX] RUN_DIR...

Each RUN_DIR holds the kd_results.csv of one `fedkd-sim` kd-study run. For
each (scheme, method) the table gives the number of runs (pairs x seeds), the
(T, weight) used (for tuned KD the most frequent choice and its share), the
mean student test accuracy before and after KD, and the accuracy gain: mean,
standard deviation over all runs and standard deviation of the per-seed means.

The study's metric: relative improvement of tuned KD's mean gain over the
largest mean gain among the untuned methods (vanilla, ensemble, dml,
partition-aware), (tuned - best) / |best|, per scheme and averaged over the
non-IID schemes. It is undefined (reported as such) when the best untuned
gain is not positive. Standard library only: the simulator never needs Python.
"""
import argparse
import collections
import csv
import json
import os
import statistics
import sys

UNTUNED = ("vanilla", "ensemble", "dml", "partition-aware")
# Tuned KD learns from the pairing's single teacher; ensemble from all others.
UNTUNED_SINGLE = ("vanilla", "dml", "partition-aware")


def read_runs(dirs):
    rows = []
    for d in dirs:
        path = os.path.join(d, "kd_results.csv")
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                r["gain"] = float(r["gain"])
                r["before"] = float(r["before"])
                r["after"] = float(r["after"])
                rows.append(r)
    return rows


def scheme_order(name):
    order = ["iid", "dirichlet(0.5)", "dirichlet(0.1)", "shards(2)"]
    return (order.index(name) if name in order else len(order), name)


def std(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows):
    table = collections.OrderedDict()
    for scheme in sorted({r["scheme"] for r in rows}, key=scheme_order):
        methods = collections.OrderedDict()
        for r in rows:
            if r["scheme"] == scheme:
                methods.setdefault(r["method"], []).append(r)
        entries = []
        for method, runs in methods.items():
            gains = [r["gain"] for r in runs]
            by_seed = collections.defaultdict(list)
            for r in runs:
                by_seed[r["seed"]].append(r["gain"])
            seed_means = [statistics.mean(v) for v in by_seed.values()]
            choices = collections.Counter((r["temperature"], r["weight"]) for r in runs)
            (t, w), count = sorted(choices.items(), key=lambda kv: (-kv[1], float(kv[0][0] or 0),
                                                                     float(kv[0][1] or 0)))[0]
            entries.append({
                "method": method,
                "runs": len(runs),
                "seeds": len(by_seed),
                "temperature": t,
                "weight": w if w != "" else "-",
                "choice_share": count / len(runs),
                "choices": {f"T={a},a={b}": c for (a, b), c in choices.most_common()},
                "before": statistics.mean(r["before"] for r in runs),
                "after": statistics.mean(r["after"] for r in runs),
                "gain_mean": statistics.mean(gains),
                "gain_std": std(gains),
                "gain_seed_std": std(seed_means),
                "gain_positive_share": sum(g > 0 for g in gains) / len(gains),
            })
        tuned = next((e for e in entries if e["method"] == "tuned"), None)
        comparison = None
        for key, group in (("", UNTUNED), ("single_", UNTUNED_SINGLE)):
            best = max((e for e in entries if e["method"] in group), key=lambda e: e["gain_mean"],
                       default=None)
            if not (best and tuned):
                continue
            relative = None
            if best["gain_mean"] > 0:
                relative = (tuned["gain_mean"] - best["gain_mean"]) / best["gain_mean"]
            comparison = comparison or {"tuned_gain": tuned["gain_mean"]}
            comparison.update({key + "best_untuned": best["method"],
                               key + "best_untuned_gain": best["gain_mean"],
                               key + "relative": relative})
        table[scheme] = {"methods": entries, "comparison": comparison}
    return table


def percent(x):
    return "undefined" if x is None else f"{100.0 * x:+.0f}%"


def markdown(table):
    lines = []
    for scheme, block in table.items():
        lines.append(f"#### {scheme}")
        lines.append("")
        lines.append("| method | runs | T | weight | before | after | gain mean | gain std "
                     "| seed std | gain > 0 |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for e in block["methods"]:
            t, w = e["temperature"], e["weight"]
            if e["method"] == "tuned":
                t = f"{t} ({100 * e['choice_share']:.0f}%)"
            lines.append(f"| {e['method']} | {e['runs']} | {t} | {w} | {e['before']:.4f} | "
                         f"{e['after']:.4f} | {e['gain_mean']:+.4f} | {e['gain_std']:.4f} | "
                         f"{e['gain_seed_std']:.4f} | {100 * e['gain_positive_share']:.0f}% |")
        c = block["comparison"]
        if c:
            lines.append("")
            lines.append(f"tuned gain {c['tuned_gain']:+.4f} vs best untuned ({c['best_untuned']}) "
                         f"{c['best_untuned_gain']:+.4f}: {percent(c['relative'])}; vs best "
                         f"single-teacher untuned ({c['single_best_untuned']}) "
                         f"{c['single_best_untuned_gain']:+.4f}: {percent(c['single_relative'])}")
        lines.append("")
    rel = {s: b["comparison"] for s, b in table.items() if b["comparison"]}
    lines.append("#### Study metric: tuned KD's gain relative to the best untuned method")
    lines.append("")
    lines.append("| scheme | vs best untuned (any) | vs best single-teacher untuned | study's claim |")
    lines.append("|---|---|---|---|")
    for s, c in rel.items():
        claim = "+16%" if s == "iid" else "(non-IID)"
        lines.append(f"| {s} | {percent(c['relative'])} ({c['best_untuned']}) | "
                     f"{percent(c['single_relative'])} ({c['single_best_untuned']}) | {claim} |")
    non_iid = [c for s, c in rel.items() if s != "iid"]
    if non_iid:
        cells = []
        for key in ("relative", "single_relative"):
            values = [c[key] for c in non_iid]
            cells.append(percent(statistics.mean(values)) if None not in values else "undefined")
        lines.append(f"| non-IID average | {cells[0]} | {cells[1]} | +139% |")
    lines.append("")
    return "\n".join(lines), rel


def grid_tables(grid_dirs):
    """--grid: vanilla KD at each (T, a), one run directory per point under
    each kd-grid-<scheme>-s<seed> (or a T<T>-a<a>.diverged marker when some
    student's training diverged there); the main runs kd-<scheme>-s<seed>
    beside them give the other methods for the same seeds."""
    by_scheme = collections.OrderedDict()
    for grid in grid_dirs:
        main_dir = os.path.join(os.path.dirname(grid.rstrip("/")),
                                os.path.basename(grid.rstrip("/")).replace("kd-grid-", "kd-", 1))
        points, diverged = {}, set()
        for name in sorted(os.listdir(grid)):
            if name.endswith(".diverged"):
                t, a = name[:-len(".diverged")][1:].split("-a")
                diverged.add((float(t), float(a)))
                continue
            path = os.path.join(grid, name, "kd_results.csv")
            if not os.path.isfile(path):
                continue
            for r in read_runs([os.path.join(grid, name)]):
                points.setdefault((float(r["temperature"]), float(r["weight"])), []).append(r)
        main_rows = read_runs([main_dir])
        scheme = main_rows[0]["scheme"]
        block = by_scheme.setdefault(scheme, {"points": collections.defaultdict(list),
                                              "main": [], "diverged": set()})
        for key, rows in points.items():
            block["points"][key].extend(rows)
        block["diverged"] |= diverged
        block["main"].extend(main_rows)
    lines, out = [], {}
    for scheme, block in sorted(by_scheme.items(), key=lambda kv: scheme_order(kv[0])):
        # A point that diverged for any seed has no mean.
        means = {k: statistics.mean(r["gain"] for r in v) for k, v in block["points"].items()
                 if k not in block["diverged"]}
        ts = sorted({k[0] for k in means} | {k[0] for k in block["diverged"]})
        ws = sorted({k[1] for k in means} | {k[1] for k in block["diverged"]})
        best_key = max(means, key=lambda k: (means[k], -k[0], -k[1]))
        main = collections.defaultdict(list)
        for r in block["main"]:
            main[r["method"]].append(r["gain"])
        main_means = {m: statistics.mean(v) for m, v in main.items()}
        untuned = {m: g for m, g in main_means.items() if m in UNTUNED}
        best_untuned = max(untuned, key=untuned.get) if untuned else None
        seeds = sorted({r["seed"] for r in block["main"]})
        lines.append(f"#### {scheme}: vanilla KD gain at each (T, a), seeds {', '.join(seeds)}")
        lines.append("")
        lines.append("| T \\ a | " + " | ".join(f"{w:g}" for w in ws) + " |")
        lines.append("|---|" + "---|" * len(ws))
        for t in ts:
            cells = []
            for w in ws:
                g = means.get((t, w))
                cell = "diverged" if (t, w) in block["diverged"] else (
                    "" if g is None else f"{g:+.4f}")
                if (t, w) == best_key:
                    cell = f"**{cell}**"
                cells.append(cell)
            lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
        relative = None
        if best_untuned and untuned[best_untuned] > 0:
            relative = (means[best_key] - untuned[best_untuned]) / untuned[best_untuned]
        lines.append("")
        lines.append(f"best point T={best_key[0]:g}, a={best_key[1]:g}: gain {means[best_key]:+.4f}; "
                     f"best untuned method ({best_untuned}) {untuned.get(best_untuned, float('nan')):+.4f}; "
                     f"tuned on the student's validation split {main_means.get('tuned', float('nan')):+.4f}; "
                     f"hindsight-best vs best untuned: {percent(relative)}")
        lines.append("")
        out[scheme] = {"gains": {f"T={k[0]:g},a={k[1]:g}": v for k, v in means.items()},
                       "diverged": [f"T={k[0]:g},a={k[1]:g}" for k in sorted(block["diverged"])],
                       "best": {"temperature": best_key[0], "weight": best_key[1],
                                "gain": means[best_key]},
                       "methods": main_means, "best_untuned": best_untuned,
                       "relative": relative}
    non_iid = [v["relative"] for s, v in out.items() if s != "iid"]
    if non_iid and all(v is not None for v in non_iid):
        lines.append(f"non-IID average of hindsight-best vs best untuned: "
                     f"{percent(statistics.mean(non_iid))} (study: +139%)")
        lines.append("")
    return "\n".join(lines), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write PREFIX.md, PREFIX.csv and PREFIX.json")
    parser.add_argument("--grid", action="store_true",
                        help="the directories are kd-grid-* runs of bench/kd_grid_bench.sh")
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    if args.grid:
        text, out = grid_tables(args.dirs)
        print(text)
        if args.out:
            with open(args.out + ".md", "w") as f:
                f.write(text)
            with open(args.out + ".json", "w") as f:
                json.dump(out, f, indent=1)
        return 0
    table = summarise(read_runs(args.dirs))
    text, rel = markdown(table)
    print(text)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(text)
        with open(args.out + ".json", "w") as f:
            json.dump({"schemes": table, "relative_improvement": rel}, f, indent=1)
        with open(args.out + ".csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["scheme", "method", "runs", "seeds", "temperature", "weight", "before",
                        "after", "gain_mean", "gain_std", "gain_seed_std"])
            for scheme, block in table.items():
                for e in block["methods"]:
                    w.writerow([scheme, e["method"], e["runs"], e["seeds"], e["temperature"],
                                e["weight"], f"{e['before']:.6f}", f"{e['after']:.6f}",
                                f"{e['gain_mean']:.6f}", f"{e['gain_std']:.6f}",
                                f"{e['gain_seed_std']:.6f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
