#!/usr/bin/python3
"""The KD study's table from a sweep of kd-study points, as markdown.

    bench/study_table.py SWEEP_DIR... [--untuned T,W] [--out FILE]

SWEEP_DIR is a sweep's output (results.json), for example of
configs/grid-study-kd.json; the rows of several sweeps are pooled (for
example one sweep per partition scheme, bench/study_sweep_bench.sh). Every completed point's per-method columns
(kd.<method>.gain_mean, .gain_std, .runs, .temperature, .weight, ...; see
src/experiments/study_output.c) are grouped by partition scheme (the point's `scheme`
label, e.g. dirichlet(0.5)), method, and the (T, weight) the method used;
seeds are pooled (a run repeated by points that differ only in keys its
method ignores counts once); any other grid key makes a table of its own. It prints:

1. Per scheme and method: the best (T, weight) by mean gain, that gain and
   the standard deviation of the runs behind it, the gain at the untuned point
   (T = 1, weight = 0.5, the fixed values of vanilla KD; --untuned), and the
   improvement of the best over the untuned point.
2. Per scheme, the study's metric: the best tuned cell (any method, any
   (T, weight)) against the best untuned method (each method at the untuned
   point), and, where the points ran `tuned` KD (T and weight chosen on a
   validation split), its gain and most frequent choice against the same
   baseline; then the average of the improvements over the non-IID schemes.

A cell (T, weight) where some run's training diverged has no mean and is
never the best; the `cells` column counts such cells. Picking the best
cell of a grid uses the test set (the gains are test
accuracies): it is the best any tuning rule could do, not a method. Methods
without a (T, weight) (dml) have one cell. Uses only the standard library.
"""
import argparse
import json
import math
import os
import re
import sys

METHOD_COLUMN = re.compile(r"^kd\.([^.]+)\.gain_mean$")
VALIDATION_TUNED = "tuned"
SCHEME_KEY = "partition.scheme"
POOLED_KEYS = {"seed", "kd.temperature", "kd.weight", "kd.methods"}
# Grid keys the `scheme` label already shows (dirichlet(0.5), shards(2)).
LABELLED_KEYS = {SCHEME_KEY, "partition.alpha", "partition.classes_per_client", "partition.sigma"}


def fail(message):
    sys.exit("study_table: error: " + message)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_table(sweep_dir):
    path = os.path.join(sweep_dir, "results.json")
    try:
        with open(path) as handle:
            table = json.load(handle)
    except (OSError, ValueError) as error:
        fail("%s: %s" % (path, error))
    if not isinstance(table.get("rows"), list):
        fail("%s: not a sweep's results (no `rows`)" % path)
    return table


class Cell:
    """Runs of one method at one (T, weight) under one scheme, pooled."""

    def __init__(self):
        self.points = 0
        self.runs = 0
        self.diverged = 0  # runs whose training diverged (not in the mean)
        self.gain_sum = 0.0  # sum over runs
        self.square_sum = 0.0  # sum over runs of gain^2, from each point's mean and std
        self.choices = {}  # tuned: (T, weight) -> runs that chose it

    def add(self, runs, gain_mean, gain_std, diverged=0):
        self.points += 1
        self.diverged += diverged
        if runs < 1:
            return
        self.runs += runs
        self.gain_sum += runs * gain_mean
        # sum of squares of n values with mean m and sample std s:
        # (n - 1) s^2 + n m^2
        self.square_sum += (runs - 1) * gain_std * gain_std + runs * gain_mean * gain_mean

    def mean(self):
        """The mean gain; None where some run diverged (as in a grid, such a
        (T, weight) has no mean and is never the best) or none ran."""
        if self.diverged or self.runs < 1:
            return None
        return self.gain_sum / self.runs

    def std(self):
        if self.mean() is None:
            return None
        if self.runs < 2:
            return 0.0
        variance = (self.square_sum - self.runs * self.mean() ** 2) / (self.runs - 1)
        return math.sqrt(max(variance, 0.0))


def collect(table, setting_keys):
    """{(setting, scheme, method, T, weight): Cell}; T and weight None for
    methods without them and for validation-tuned KD (whose choice is an
    outcome, kept in Cell.choices)."""
    cells = {}
    seen = set()
    for row in table["rows"]:
        if row.get("status") != "completed":
            continue
        scheme = row.get("scheme") or row.get(SCHEME_KEY) or "-"
        setting = tuple((k, json.dumps(row.get(k))) for k in setting_keys)
        seed = json.dumps(row.get("seed"))
        for column, value in row.items():
            match = METHOD_COLUMN.match(column)
            if not match:
                continue
            method = match.group(1)
            prefix = "kd.%s." % method
            runs = row.get(prefix + "runs")
            std = row.get(prefix + "gain_std")
            diverged = row.get(prefix + "diverged")
            diverged = int(diverged) if is_number(diverged) else 0
            t, w = row.get(prefix + "temperature"), row.get(prefix + "weight")
            if not is_number(runs) or (runs < 1 and diverged < 1) or \
                    (runs >= 1 and not is_number(value)):
                continue
            has_setting = is_number(t) and is_number(w)
            if method == VALIDATION_TUNED or not has_setting:
                key = (setting, scheme, method, None, None)
            else:
                key = (setting, scheme, method, float(t), float(w))
            # Points that differ only in keys this method ignores (dml and
            # tuned KD at each kd.temperature of the grid) repeat the same
            # runs: count them once.
            if (key, seed) in seen:
                continue
            seen.add((key, seed))
            cell = cells.setdefault(key, Cell())
            cell.add(int(runs), float(value) if is_number(value) else 0.0,
                     float(std) if is_number(std) else 0.0, diverged)
            if method == VALIDATION_TUNED and has_setting:
                share = row.get(prefix + "choice_share")
                chosen = int(round(runs * share)) if is_number(share) else int(runs)
                cell.choices[(float(t), float(w))] = cell.choices.get((float(t), float(w)), 0) + chosen
    return cells


def number(value, digits=4, signed=False):
    if value is None:
        return "-"
    return ("%+.*f" if signed else "%.*f") % (digits, value)


def short(value):
    return "-" if value is None else "%g" % value


def relative(tuned, untuned):
    if tuned is None or untuned is None or untuned == 0:
        return None
    return 100.0 * (tuned - untuned) / abs(untuned)


def percent(value):
    return "-" if value is None else "%+.0f%%" % value


def scheme_order(scheme):
    # iid first, then the others alphabetically (the study's order).
    return (0 if scheme == "iid" else 1, scheme)


def build(table, untuned):
    keys = table.get("keys", [])
    setting_keys = [k for k in keys if k not in POOLED_KEYS and k not in LABELLED_KEYS]
    cells = collect(table, setting_keys)
    if not cells:
        fail("no completed point has per-method KD columns (kd.<method>.gain_mean): "
             "is this a sweep of kd-study points?")
    lines = []
    settings = sorted({k[0] for k in cells})
    for setting in settings:
        if setting_keys:
            lines.append("### " + ", ".join("%s = %s" % (k, json.loads(v)) for k, v in setting))
            lines.append("")
        schemes = sorted({k[1] for k in cells if k[0] == setting}, key=scheme_order)
        lines.append("Best (T, weight) per partition scheme and method (mean gain over the pooled "
                     "runs; untuned: T = %g, weight = %g):" % untuned)
        lines.append("")
        lines.append("| scheme | method | best T | best weight | gain | std | runs | "
                     "untuned gain | best over untuned | cells |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        summary = []
        for scheme in schemes:
            methods = sorted({k[2] for k in cells if k[0] == setting and k[1] == scheme})
            best_cell = None  # (gain, method, T, weight)
            best_untuned = None  # (gain, method)
            validation = None
            for method in methods:
                group = {k: c for k, c in cells.items()
                         if k[0] == setting and k[1] == scheme and k[2] == method}
                if method == VALIDATION_TUNED:
                    validation = next(iter(group.values()))
                    continue
                usable = {k: c for k, c in group.items() if c.mean() is not None}
                diverged_cells = len(group) - len(usable)
                cells_text = "%d" % len(group) + (
                    " (%d diverged)" % diverged_cells if diverged_cells else "")
                at_untuned = group.get((setting, scheme, method, untuned[0], untuned[1]))
                if not usable:  # every cell had a diverged run
                    lines.append("| %s | %s | - | - | - | - | 0 | - | - | %s |" % (
                        scheme, method, cells_text))
                    continue
                (_, _, _, t, w), cell = max(usable.items(), key=lambda item: item[1].mean())
                if t is None:  # no (T, weight): its one cell is its untuned value
                    at_untuned = cell
                untuned_gain = at_untuned.mean() if at_untuned else None
                lines.append("| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |" % (
                    scheme, method, short(t), short(w), number(cell.mean(), signed=True),
                    number(cell.std()), cell.runs, number(untuned_gain, signed=True),
                    percent(relative(cell.mean(), untuned_gain)), cells_text))
                if best_cell is None or cell.mean() > best_cell[0]:
                    best_cell = (cell.mean(), method, t, w)
                if untuned_gain is not None and (best_untuned is None or untuned_gain > best_untuned[0]):
                    best_untuned = (untuned_gain, method)
            summary.append((scheme, best_cell, best_untuned, validation))
        lines.append("")
        lines.append("Tuned over untuned KD per scheme (the study's metric): the best cell against "
                     "the best method at the untuned point%s:" % (
                         "; validation-tuned: `tuned` KD, (T, weight) chosen on a validation "
                         "split (most frequent choice and its share of runs)"
                         if any(s[3] for s in summary) else ""))
        lines.append("")
        lines.append("| scheme | best untuned method | untuned gain | best tuned cell | tuned gain | "
                     "best over untuned | validation-tuned gain | its choice | validation-tuned "
                     "over untuned |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        non_iid = {"best": [], "validation": []}
        for scheme, best_cell, best_untuned, validation in summary:
            untuned_gain = best_untuned[0] if best_untuned else None
            tuned_gain = best_cell[0] if best_cell else None
            cell_text = "-"
            if best_cell:
                cell_text = best_cell[1] if best_cell[2] is None else "%s (%s, %s)" % (
                    best_cell[1], short(best_cell[2]), short(best_cell[3]))
            validation_gain = validation.mean() if validation else None
            choice = "-"
            if validation and validation.choices:
                (t, w), count = max(validation.choices.items(), key=lambda item: (item[1], -item[0][0], -item[0][1]))
                choice = "(%s, %s) %d%%" % (short(t), short(w), round(100.0 * count / validation.runs))
            best_gain = relative(tuned_gain, untuned_gain)
            validation_over = relative(validation_gain, untuned_gain)
            if scheme != "iid":
                if best_gain is not None:
                    non_iid["best"].append(best_gain)
                if validation_over is not None:
                    non_iid["validation"].append(validation_over)
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                scheme, best_untuned[1] if best_untuned else "-", number(untuned_gain, signed=True),
                cell_text, number(tuned_gain, signed=True), percent(best_gain),
                number(validation_gain, signed=True), choice, percent(validation_over)))
        if non_iid["best"] or non_iid["validation"]:
            average = {k: sum(v) / len(v) if v else None for k, v in non_iid.items()}
            lines.append("| non-IID average | | | | | %s | | | %s |" % (
                percent(average["best"]), percent(average["validation"])))
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", metavar="SWEEP_DIR", nargs="+",
                        help="a sweep's output directory (several are pooled)")
    parser.add_argument("--untuned", default="1,0.5", help="the untuned (T, weight) (default 1,0.5)")
    parser.add_argument("--out", help="write the markdown here as well as to stdout")
    args = parser.parse_args()
    try:
        untuned = tuple(float(v) for v in args.untuned.split(","))
        if len(untuned) != 2:
            raise ValueError
    except ValueError:
        fail("--untuned expects T,WEIGHT (two numbers), got %s" % args.untuned)
    tables = [read_table(d) for d in args.sweep_dirs]
    keys = []
    for t in tables:
        keys += [k for k in t.get("keys", []) if k not in keys]
    pooled = {"keys": keys, "rows": [row for t in tables for row in t["rows"]]}
    text = build(pooled, untuned)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
