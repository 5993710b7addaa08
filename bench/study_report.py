#!/usr/bin/python3
"""REPORT.md of a study that launch/study ran: tables, the claims side by side
with ours, and PNG figures.

    bench/study_report.py STUDY_DIR [--kd-start-target ACC]

STUDY_DIR holds plan.json (written by launch/study) and the sweeps it lists.
From the KD-study sweeps (kind kd-grid: the grid methods at every (T, weight);
kd-once: the methods run once, e.g. validation-tuned KD) it tabulates:

1. the gain of every method per partition scheme at the untuned point
   (T, weight = the study file's `untuned`, default 1, 0.5), mean and
   standard deviation over seeds of the per-seed mean gains;
2. per scheme and grid method, the best (T, weight): the cell with the best
   seed-mean gain (a cell where any run diverged, or that lacks a seed, is
   never the best), its spread over seeds, and its gain over the untuned point;
3. tuned over untuned per scheme (the study's metric): the best untuned
   method against the best tuned cell (picked with the test set: an upper
   bound, not a method) and against validation-tuned KD, with the range of
   the same ratio computed seed by seed, and the non-IID average;

and from the kd-start sweeps (one point per regime: model, clients, clients
per round, local steps):

4. per regime, the total rounds to target (consolidation exchanges + FedAvg
   rounds) and the bytes to target of each start, mean and standard deviation
   over seeds, and the KD start's reduction against the random start; where
   the random start missed the target within the run's rounds the reduction
   is a lower bound (the random start would need at least rounds + 1);
5. the claims (16%, 139%, 60.6%) beside ours, with a plain verdict.

Figures (STUDY_DIR/figures): heatmap-<method>.png (seed-mean gain over
(T, weight), one panel per scheme), rounds-<model>-c<clients>.png (total
rounds to target per regime and start), curves-<model>-c<clients>.png (test
accuracy per round of the three starts, first seed, one panel per regime).
Needs python3-matplotlib.
"""
import argparse
import csv
import json
import math
import os
import sys
import time

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("study_report: matplotlib is missing; install it with: apt-get install python3-matplotlib")

STARTS = ("random", "average", "kd")
CLAIMS = {"tuned_iid_percent": 16.0, "tuned_non_iid_percent": 139.0,
          "kd_start_fewer_rounds_percent": 60.6}
VALIDATION_TUNED = "tuned"


def is_tuned(method):
    """Methods that choose (T, weight) on a validation split: tuned (vanilla)
    and tuned-<method>."""
    return method == VALIDATION_TUNED or method.startswith(VALIDATION_TUNED + "-")


def fail(message):
    sys.exit("study_report: error: " + message)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean(values):
    return sum(values) / len(values) if values else None


def std(values):
    if len(values) < 2:
        return 0.0 if values else None
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def relative(tuned, untuned):
    if tuned is None or untuned is None or untuned == 0:
        return None
    return 100.0 * (tuned - untuned) / abs(untuned)


def signed(value, digits=4):
    return "-" if value is None else "%+.*f" % (digits, value)


def percent(value):
    return "-" if value is None else "%+.0f%%" % value


def spread(values, digits=4, sign=True):
    """mean ± std (n) of per-seed values."""
    if not values:
        return "-"
    text = ("%+.*f" if sign else "%.*f") % (digits, mean(values))
    if len(values) > 1:
        text += " ± %.*f" % (digits, std(values))
    return text + " (%d)" % len(values)


def seed_range(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return percent(values[0])
    return "%s to %s" % (percent(min(values)), percent(max(values)))


def scheme_order(scheme):
    return (0 if scheme == "iid" else 1, scheme)


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def sweep_rows(sweep):
    table = read_json(os.path.join(sweep["output"], "results.json")) or {}
    return [r for r in table.get("rows", []) if isinstance(r, dict) and r.get("status") == "completed"]


# ---- the KD study ------------------------------------------------------------------

class KdData:
    def __init__(self, plan):
        kd = plan["study"].get("kd_study") or {}
        self.untuned = tuple(float(v) for v in kd.get("untuned", [1, 0.5]))
        self.temperatures = [float(t) for t in kd.get("temperatures", [])]
        self.weights = [float(w) for w in kd.get("weights", [])]
        self.grid_methods = list(kd.get("grid_methods", []))
        self.once_methods = list(kd.get("once_methods", []))
        # (scheme, method, T, weight) -> {seed: gain or None (diverged)}
        self.cells = {}
        # (scheme, method) -> {seed: gain}, methods run once
        self.once = {}
        self.choices = {}  # (scheme, method, seed) -> (T, weight, share) of a tuned method
        self.schemes = []
        self.points = 0
        for sweep in plan["sweeps"]:
            if sweep["kind"] not in ("kd-grid", "kd-once"):
                continue
            scheme, seed = sweep["labels"]["scheme"], sweep["labels"]["seed"]
            if scheme not in self.schemes:
                self.schemes.append(scheme)
            for row in sweep_rows(sweep):
                self.points += 1
                for method in self.grid_methods if sweep["kind"] == "kd-grid" else self.once_methods:
                    prefix = "kd.%s." % method
                    gain = row.get(prefix + "gain_mean")
                    diverged = row.get(prefix + "diverged")
                    value = float(gain) if is_number(gain) and not (
                        is_number(diverged) and diverged > 0) else None
                    if sweep["kind"] == "kd-grid":
                        key = (scheme, method, float(row["kd.temperature"]), float(row["kd.weight"]))
                        self.cells.setdefault(key, {})[seed] = value
                    else:
                        self.once.setdefault((scheme, method), {})[seed] = value
                        if is_tuned(method):
                            t, w = row.get(prefix + "temperature"), row.get(prefix + "weight")
                            share = row.get(prefix + "choice_share")
                            if is_number(t) and is_number(w):
                                self.choices[(scheme, method, seed)] = (
                                    t, w, share if is_number(share) else None)
        self.schemes.sort(key=scheme_order)
        self.seeds = sorted({s for v in list(self.cells.values()) + list(self.once.values()) for s in v})

    def cell_values(self, scheme, method, t, w):
        """Per-seed gains of a cell, or None when a run diverged or a seed is missing."""
        seeds = self.cells.get((scheme, method, t, w))
        if not seeds or any(v is None for v in seeds.values()) or len(seeds) < len(self.seeds):
            return None
        return seeds

    def untuned_values(self, scheme, method):
        if method in self.once_methods:
            seeds = self.once.get((scheme, method))
            if not seeds or any(v is None for v in seeds.values()):
                return None
            return seeds
        return self.cell_values(scheme, method, *self.untuned)

    def best_cell(self, scheme, method):
        best = None
        for t in self.temperatures:
            for w in self.weights:
                values = self.cell_values(scheme, method, t, w)
                if values is None:
                    continue
                m = mean(list(values.values()))
                if best is None or m > best[0]:
                    best = (m, t, w, values)
        return best

    def diverged_cells(self, scheme, method):
        return sum(1 for (s, m, _, _), seeds in self.cells.items()
                   if s == scheme and m == method and any(v is None for v in seeds.values()))


def kd_tables(kd, lines):
    if not kd.schemes:
        return {}
    methods = kd.grid_methods + [m for m in kd.once_methods if m not in kd.grid_methods]
    lines += ["## KD between pre-trained models", "",
              "Seeds: %s; %d KD-study points. Gain = the student's test accuracy after KD minus "
              "before, averaged over the point's pairs; ± is the standard deviation over seeds of "
              "these per-seed means, (n) the seeds." % (", ".join(str(s) for s in kd.seeds), kd.points),
              "",
              "### Gain per method and scheme (untuned: T = %g, weight = %g; tuned methods: "
              "their own choice)" % (kd.untuned[0], kd.untuned[1]), "",
              "| scheme | " + " | ".join(methods) + " |",
              "|---|" + "---|" * len(methods)]
    for scheme in kd.schemes:
        cells = []
        for method in methods:
            values = kd.untuned_values(scheme, method)
            cells.append(spread(list(values.values())) if values else "diverged / -")
        lines.append("| %s | %s |" % (scheme, " | ".join(cells)))
    lines += ["", "### Best (T, weight) per scheme and method (seed-mean gain; picked with the "
              "test set)", "",
              "| scheme | method | best T | best weight | gain | untuned gain | best over untuned "
              "| cells with a diverged run |", "|---|---|---|---|---|---|---|---|"]
    for scheme in kd.schemes:
        for method in kd.grid_methods:
            best = kd.best_cell(scheme, method)
            untuned = kd.untuned_values(scheme, method)
            u = mean(list(untuned.values())) if untuned else None
            if best is None:
                lines.append("| %s | %s | - | - | - | %s | - | %d |" % (
                    scheme, method, signed(u), kd.diverged_cells(scheme, method)))
                continue
            lines.append("| %s | %s | %g | %g | %s | %s | %s | %d |" % (
                scheme, method, best[1], best[2], spread(list(best[3].values())), signed(u),
                percent(relative(best[0], u)), kd.diverged_cells(scheme, method)))
    lines += ["", "### Tuned over untuned per scheme (the study's metric)", "",
              "Best untuned: the method with the best seed-mean gain at the untuned point (any "
              "method but the tuned ones). Best tuned cell: any grid method at its best (T, "
              "weight), picked with the test set. Best validation-tuned: the tuned method (`%s` "
              "or `%s-<method>`, (T, weight) chosen on the validation split, never the test set) "
              "with the best seed-mean gain, and its choice per seed. Seed range: the same ratio "
              "computed seed by seed." % (VALIDATION_TUNED, VALIDATION_TUNED), "",
              "| scheme | best untuned | untuned gain | best tuned cell | tuned gain | best over "
              "untuned | seed range | best validation-tuned | its gain | its choices | validation-tuned "
              "over untuned | seed range |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios = {}
    for scheme in kd.schemes:
        untuned = None  # (mean, method, per-seed)
        for method in methods:
            if is_tuned(method):
                continue
            values = kd.untuned_values(scheme, method)
            if values and (untuned is None or mean(list(values.values())) > untuned[0]):
                untuned = (mean(list(values.values())), method, values)
        tuned = None  # (mean, method, T, weight, per-seed)
        for method in kd.grid_methods:
            best = kd.best_cell(scheme, method)
            if best and (tuned is None or best[0] > tuned[0]):
                tuned = (best[0], method, best[1], best[2], best[3])
        validation, validation_method = None, None
        for method in kd.once_methods:
            seeds = kd.once.get((scheme, method))
            if not is_tuned(method) or not seeds or any(x is None for x in seeds.values()):
                continue
            if validation is None or mean(list(seeds.values())) > mean(list(validation.values())):
                validation, validation_method = seeds, method
        u = untuned[0] if untuned else None
        b = tuned[0] if tuned else None
        v = mean(list(validation.values())) if validation else None
        per_seed_best, per_seed_validation = [], []
        for seed in kd.seeds:
            us = untuned[2].get(seed) if untuned else None
            if tuned and tuned[4].get(seed) is not None:
                per_seed_best.append(relative(tuned[4][seed], us))
            if validation and validation.get(seed) is not None:
                per_seed_validation.append(relative(validation[seed], us))
        choices = ", ".join("(%g, %g)" % kd.choices[(scheme, validation_method, s)][:2]
                            for s in kd.seeds
                            if (scheme, validation_method, s) in kd.choices) or "-"
        ratios[scheme] = {"best": relative(b, u), "validation": relative(v, u),
                          "best_seeds": per_seed_best, "validation_seeds": per_seed_validation}
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            scheme, untuned[1] if untuned else "-", signed(u),
            "%s (%g, %g)" % (tuned[1], tuned[2], tuned[3]) if tuned else "-", signed(b),
            percent(relative(b, u)), seed_range(per_seed_best), validation_method or "-",
            signed(v), choices,
            percent(relative(v, u)), seed_range(per_seed_validation)))
    non_iid = [s for s in kd.schemes if s != "iid"]
    summary = {}
    for kind in ("best", "validation"):
        values = [ratios[s][kind] for s in non_iid if ratios[s][kind] is not None]
        summary[kind] = mean(values) if values else None
        # The average seed by seed, over the schemes that have that seed.
        per_seed = []
        for index in range(len(kd.seeds)):
            row = [ratios[s][kind + "_seeds"][index] for s in non_iid
                   if index < len(ratios[s][kind + "_seeds"])
                   and ratios[s][kind + "_seeds"][index] is not None]
            if row:
                per_seed.append(mean(row))
        summary[kind + "_seeds"] = per_seed
    if non_iid:
        lines.append("| non-IID average (%d schemes) | | | | | %s | %s | | | | %s | %s |" % (
            len(non_iid), percent(summary["best"]), seed_range(summary["best_seeds"]),
            percent(summary["validation"]), seed_range(summary["validation_seeds"])))
    lines.append("")
    return {"iid": ratios.get("iid"), "non_iid": summary, "non_iid_schemes": len(non_iid)}


def kd_heatmaps(kd, figures):
    made = []
    if not kd.schemes or not kd.temperatures or not kd.weights:
        return made
    for method in kd.grid_methods:
        columns = len(kd.schemes)
        fig, axes = plt.subplots(1, columns, figsize=(2.6 * columns + 1, 2.8), squeeze=False)
        for axis, scheme in zip(axes[0], kd.schemes):
            grid = []
            for t in kd.temperatures:
                row = []
                for w in kd.weights:
                    values = kd.cell_values(scheme, method, t, w)
                    row.append(mean(list(values.values())) if values else float("nan"))
                grid.append(row)
            finite = [abs(v) for r in grid for v in r if not math.isnan(v)]
            limit = max(finite) if finite else 1.0
            axis.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
            for i, r in enumerate(grid):
                for j, v in enumerate(r):
                    axis.text(j, i, "x" if math.isnan(v) else "%+.3f" % v, ha="center",
                              va="center", fontsize=6)
            axis.set_xticks(range(len(kd.weights)))
            axis.set_xticklabels(["%g" % w for w in kd.weights], fontsize=7)
            axis.set_yticks(range(len(kd.temperatures)))
            axis.set_yticklabels(["%g" % t for t in kd.temperatures], fontsize=7)
            axis.set_xlabel("weight a", fontsize=7)
            axis.set_title(scheme, fontsize=8)
        axes[0][0].set_ylabel("T", fontsize=7)
        fig.suptitle("%s KD: seed-mean gain over (T, a) (x: a run diverged)" % method, fontsize=9)
        fig.tight_layout()
        name = "heatmap-%s.png" % method
        fig.savefig(os.path.join(figures, name), dpi=80)
        plt.close(fig)
        made.append(name)
    return made


# ---- the KD-consolidated start ---------------------------------------------------------

class Regime:
    def __init__(self, labels, per_round):
        self.model = labels["model"]
        self.clients = labels["clients"]
        self.steps = labels["steps"]
        self.rounds = labels["rounds"]
        self.target = labels["target"]
        self.scheme = labels["scheme"]
        self.per_round = per_round
        self.seeds = {}  # seed -> row

    def name(self):
        steps = "1 epoch" if not self.steps else "%d steps" % self.steps
        return "%g x %d, %s" % (self.per_round, self.clients, steps)


def total_rounds(row, start, target=None):
    value = row.get("total_rounds_%s" % start)
    return float(value) if is_number(value) else None


def collect_regimes(plan):
    regimes = {}
    for sweep in plan["sweeps"]:
        if sweep["kind"] != "kd-start":
            continue
        labels = sweep["labels"]
        for row in sweep_rows(sweep):
            per_round = float(row.get("clients.per_round"))
            key = (labels["scheme"], labels["model"], labels["clients"], labels["steps"], per_round)
            regime = regimes.setdefault(key, Regime(labels, per_round))
            row = dict(row)
            row["_dir"] = os.path.join(sweep["output"], "point-%04d" % int(row["point"]))
            regime.seeds[labels["seed"]] = row
    # Most local work first: one epoch, then the step counts from high to low.
    order = sorted(regimes, key=lambda k: (k[0], k[1], k[2], -k[4], k[3] != 0, -(k[3] or 0)))
    return [regimes[k] for k in order]


def reduction_of(regime, row):
    """The KD start's reduction of total rounds against the random start, and
    whether it is a lower bound (the random start missed the target)."""
    kd, random = total_rounds(row, "kd"), total_rounds(row, "random")
    if kd is None:
        return None, False
    if random is None:
        return 100.0 * (1.0 - kd / (regime.rounds + 1)), True
    return 100.0 * (random - kd) / random, False


def rounds_cell(regime, start):
    values = [total_rounds(r, start) for r in regime.seeds.values()]
    reached = [v for v in values if v is not None]
    if not reached:
        return "> %d" % regime.rounds
    text = "%.1f" % mean(reached)
    if len(reached) > 1:
        text += " ± %.1f" % std(reached)
    if len(reached) < len(values):
        text += " (%d of %d seeds; others > %d)" % (len(reached), len(values), regime.rounds)
    return text


def megabytes(regime, start):
    values = [r.get("bytes_to_target_%s" % start) for r in regime.seeds.values()]
    values = [v / 1e6 for v in values if is_number(v)]
    return "%.1f" % mean(values) if values else "-"


def kd_start_tables(regimes, lines):
    if not regimes:
        return {}
    lines += ["## KD-consolidated start: where it saves rounds", "",
              "Per regime (clients per round x clients, local work per round): total rounds to "
              "target = consolidation exchanges (0 random, 1 average, 1 KD) + FedAvg rounds "
              "until the global test accuracy first reaches the target; mean ± standard deviation "
              "over seeds. MB to target: the payload of those rounds plus the consolidation's "
              "upload. KD reduction: fewer total rounds than the random start, per seed, then "
              "mean ± std; `≥` where the random start missed the target within the run's rounds "
              "in some seed (it is then counted as rounds + 1, a lower bound). **Bold**: 60% or "
              "more.", ""]
    all_reductions, by_regime = [], []
    groups = []
    for regime in regimes:
        key = (regime.scheme, regime.model, regime.clients)
        if key not in groups:
            groups.append(key)
    for scheme, model, clients in groups:
        members = [r for r in regimes if (r.scheme, r.model, r.clients) == (scheme, model, clients)]
        lines += ["### %s, %s, %d clients, target %.2f" % (scheme, model, clients, members[0].target), "",
                  "| clients per round | local work | rounds run | round-0 acc. random / average / kd "
                  "| total rounds random | average | kd | KD reduction | MB to target random / average "
                  "/ kd | seeds |", "|---|---|---|---|---|---|---|---|---|---|"]
        for regime in members:
            rows = list(regime.seeds.values())
            reductions, bound = [], False
            for row in rows:
                value, lower = reduction_of(regime, row)
                if value is not None:
                    reductions.append(value)
                    bound = bound or lower
            text = "-"
            if reductions:
                text = ("≥ " if bound else "") + "%+.1f%%" % mean(reductions)
                if len(reductions) > 1:
                    text += " ± %.1f" % std(reductions)
                if mean(reductions) >= 60.0:
                    text = "**%s**" % text
                all_reductions += reductions
                by_regime.append((mean(reductions), regime, bound))
            round0 = " / ".join("%.2f" % mean([r.get("round0_accuracy_%s" % s, 0.0) for r in rows])
                                for s in STARTS)
            lines.append("| %g | %s | %d | %s | %s | %s | %s | %s | %s | %d |" % (
                regime.per_round, "1 epoch" if not regime.steps else "%d steps" % regime.steps,
                regime.rounds, round0, rounds_cell(regime, "random"), rounds_cell(regime, "average"),
                rounds_cell(regime, "kd"), text,
                " / ".join(megabytes(regime, s) for s in STARTS), len(rows)))
        lines.append("")
    return {"all": all_reductions, "by_regime": by_regime}


def kd_start_figures(regimes, figures):
    made = []
    groups = []
    for regime in regimes:
        key = (regime.model, regime.clients)
        if key not in groups:
            groups.append(key)
    colours = {"random": "tab:grey", "average": "tab:orange", "kd": "tab:blue"}
    for model, clients in groups:
        members = [r for r in regimes if (r.model, r.clients) == (model, clients)]
        fig, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(members) + 1.5), 3.0))
        width = 0.27
        for i, start in enumerate(STARTS):
            heights, errors, missed = [], [], []
            for regime in members:
                values = [total_rounds(r, start) for r in regime.seeds.values()]
                reached = [v for v in values if v is not None]
                capped = [v if v is not None else regime.rounds + 1 for v in values]
                heights.append(mean(capped) if capped else 0)
                errors.append(std(capped) if len(capped) > 1 else 0)
                missed.append(len(reached) < len(values))
            positions = [j + (i - 1) * width for j in range(len(members))]
            bars = axis.bar(positions, heights, width, yerr=errors, label=start,
                            color=colours[start], capsize=2)
            for bar, miss in zip(bars, missed):
                if miss:
                    bar.set_hatch("//")
        axis.set_xticks(range(len(members)))
        axis.set_xticklabels([r.name().split(", ")[0].split(" x ")[0] + "\n" +
                              ("epoch" if not r.steps else "%d st." % r.steps) for r in members],
                             fontsize=7)
        axis.set_ylabel("total rounds to target", fontsize=8)
        axis.set_title("%s, %d clients (hatched: target missed in some seed)" % (model, clients),
                       fontsize=8)
        axis.legend(fontsize=7)
        fig.tight_layout()
        name = "rounds-%s-c%d.png" % (model, clients)
        fig.savefig(os.path.join(figures, name), dpi=80)
        plt.close(fig)
        made.append(name)

        columns = min(len(members), 3)
        rows_count = (len(members) + columns - 1) // columns
        fig, axes = plt.subplots(rows_count, columns, figsize=(2.8 * columns, 2.2 * rows_count),
                                 squeeze=False)
        for axis in axes.flat:
            axis.set_visible(False)
        for axis, regime in zip(axes.flat, members):
            axis.set_visible(True)
            seed = min(regime.seeds)
            row = regime.seeds[seed]
            report = read_json(os.path.join(row["_dir"], "kd_start.json")) or {}
            for start in report.get("starts", []):
                path = os.path.join(row["_dir"], start.get("run_dir", ""), "rounds.csv")
                # The start model exists once its consolidation is done.
                xs = [start.get("consolidation_rounds", 0)]
                ys = [start.get("round0_accuracy", 0.0)]
                try:
                    with open(path) as handle:
                        for record in csv.DictReader(handle):
                            xs.append(int(record["round"]) + start.get("consolidation_rounds", 0))
                            ys.append(float(record["test_accuracy"]))
                except (OSError, ValueError, KeyError):
                    continue
                axis.plot(xs, ys, label=start.get("start"), color=colours.get(start.get("start")),
                          linewidth=1)
            axis.axhline(regime.target, color="black", linewidth=0.5, linestyle=":")
            axis.set_title(regime.name() + " (seed %s)" % seed, fontsize=7)
            axis.tick_params(labelsize=6)
        axes.flat[0].legend(fontsize=6)
        fig.suptitle("%s, %d clients: test accuracy per round (x: exchanges incl. consolidation)" % (
            model, clients), fontsize=8)
        fig.tight_layout()
        name = "curves-%s-c%d.png" % (model, clients)
        fig.savefig(os.path.join(figures, name), dpi=80)
        plt.close(fig)
        made.append(name)
    return made


# ---- claims -------------------------------------------------------------------------------

def verdict(ours, claim, low=None):
    if ours is None:
        return "not measured"
    if ours >= claim or (low is not None and low <= claim <= ours):
        return "reproduced"
    if ours > 0:
        return "same direction, smaller (%.0f%% of the claim)" % (100.0 * ours / claim)
    return "not reproduced (no gain)"


def claims_table(kd_summary, start_summary, lines):
    lines += ["## The study's claims beside ours", "",
              "Verdict: *reproduced* when ours reaches the claim, *same direction, smaller* when "
              "ours is positive but below it, *not reproduced* otherwise. Spreads: ranges over "
              "seeds (KD) or standard deviation over seeds and regimes (start).", "",
              "| claim | study | ours | spread | verdict |", "|---|---|---|---|---|"]
    iid = kd_summary.get("iid") or {}
    non_iid = kd_summary.get("non_iid") or {}
    for label, key, data, seeds_key in (
            ("tuned over untuned KD, IID: best tuned cell (test-set hindsight)", "tuned_iid_percent",
             iid.get("best"), iid.get("best_seeds")),
            ("tuned over untuned KD, IID: best validation-tuned method", "tuned_iid_percent",
             iid.get("validation"), iid.get("validation_seeds")),
            ("tuned over untuned KD, non-IID average: best tuned cell", "tuned_non_iid_percent",
             non_iid.get("best"), non_iid.get("best_seeds")),
            ("tuned over untuned KD, non-IID average: best validation-tuned method", "tuned_non_iid_percent",
             non_iid.get("validation"), non_iid.get("validation_seeds"))):
        seeds = [v for v in (seeds_key or []) if v is not None]
        lines.append("| %s | +%g%% | %s | %s | %s |" % (
            label, CLAIMS[key], percent(data), seed_range(seeds),
            verdict(data, CLAIMS[key], min(seeds) if seeds else None)))
    reductions = start_summary.get("all") or []
    by_regime = start_summary.get("by_regime") or []
    claim = CLAIMS["kd_start_fewer_rounds_percent"]
    if reductions:
        average = mean(reductions)
        lines.append("| KD start: fewer total rounds, average over every regime and seed | %g%% | "
                     "%+.1f%% | ± %.1f (%d runs) | %s |" % (claim, average, std(reductions) or 0.0,
                                                             len(reductions), verdict(average, claim)))
        best = max(by_regime, key=lambda item: item[0])
        lines.append("| KD start: the regime where it saves most | %g%% | %s%+.1f%% (%s, %s) | | %s |" % (
            claim, "≥ " if best[2] else "", best[0], best[1].model, best[1].name(),
            verdict(best[0], claim)))
        epoch = [item for item in by_regime if not item[1].steps and item[1].per_round == 1.0]
        for value, regime, bound in epoch:
            lines.append("| KD start, every client a full epoch per round (%s, %d clients) | %g%% | "
                         "%s%+.1f%% | | %s |" % (regime.model, regime.clients, claim,
                                                 "≥ " if bound else "", value, verdict(value, claim)))
        saving = [item for item in by_regime if item[0] >= claim]
        lines += ["", "Regimes where the KD start saves %g%% or more of the total rounds: %s." % (
            claim, "; ".join("%s %d clients %s (%s%+.0f%%)" % (
                r.model, r.clients, r.name(), "≥ " if b else "", v) for v, r, b in saving) or "none"),
                  "Regimes where it saves nothing (≤ 0%%): %s." % (
            "; ".join("%s %d clients %s (%+.0f%%)" % (r.model, r.clients, r.name(), v)
                      for v, r, b in by_regime if v <= 0) or "none")]
    lines.append("")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir")
    args = parser.parse_args()
    plan = read_json(os.path.join(args.study_dir, "plan.json"))
    if not isinstance(plan, dict) or "sweeps" not in plan:
        fail("%s: no plan.json from launch/study" % args.study_dir)
    figures = os.path.join(args.study_dir, "figures")
    os.makedirs(figures, exist_ok=True)
    study = plan["study"]
    done = sum(len(sweep_rows(s)) for s in plan["sweeps"])
    total = sum(s["points"] for s in plan["sweeps"])
    seconds = 0.0
    for sweep in plan["sweeps"]:
        for row in sweep_rows(sweep):
            if is_number(row.get("wall_seconds")):
                seconds += row["wall_seconds"]
    lines = ["# Study report", "",
             "- Study file: `%s` (%s)" % (os.path.relpath(plan["study_file"]), study.get("description", "")),
             "- Expected time: %s" % study.get("expected_time", "not stated"),
             "- Points completed: %d of %d (%d sweeps); their wall time adds up to %.1f min" % (
                 done, total, len(plan["sweeps"]), seconds / 60.0),
             "- Written %s by bench/study_report.py" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             ""]
    if done < total:
        lines += ["**Incomplete**: %d points have not run (or failed); the tables use what has run." % (
            total - done), ""]
    claims_at = len(lines)
    kd = KdData(plan)
    kd_summary = kd_tables(kd, lines)
    regimes = collect_regimes(plan)
    start_summary = kd_start_tables(regimes, lines)
    claim_lines = []
    claims_table(kd_summary, start_summary, claim_lines)
    lines[claims_at:claims_at] = claim_lines
    made = kd_heatmaps(kd, figures) + kd_start_figures(regimes, figures)
    if made:
        lines += ["## Figures", ""] + ["![%s](figures/%s)" % (m, m) for m in made] + [""]
    text = "\n".join(lines)
    with open(os.path.join(args.study_dir, "REPORT.md"), "w") as handle:
        handle.write(text + "\n")
    print("study_report: %s (%d figures)" % (os.path.join(args.study_dir, "REPORT.md"), len(made)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
