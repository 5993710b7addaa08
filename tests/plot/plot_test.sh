#!/usr/bin/env bash
# launch/plot on a tiny run pair and a tiny sweep: every PNG it names exists,
# is not empty and is a PNG (magic bytes); the sweep's best.csv has a row per
# partition scheme. Exits 77 (skipped) without Debian's python3-matplotlib.
#   plot_test.sh SOURCE_ROOT MPIEXEC FEDKD_SIM
set -uo pipefail
root=$1 mpiexec=$2 sim=$3
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    echo "SKIP: /usr/bin/python3 has no matplotlib; install python3-matplotlib (./launch/test does)"
    exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
work=$(mktemp -d /tmp/fedkd-plot-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
sweep_command=("$sim" sweep)

# is_png FILE: exists, not empty, starts with the PNG signature.
is_png() {
    [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
}

cat >"$work/tiny.json" <<'JSON'
{"mode": "federated", "data": {"name": "synthetic", "synthetic_train": 800, "synthetic_test": 200},
 "model": [{"type": "dense", "units": 16}, {"type": "relu"}, {"type": "dense", "units": 4}],
 "clients": {"count": 4}, "partition": {"min_size": 5}, "local": {"batch_size": 16}, "rounds": 4}
JSON
for algorithm in fedavg fedprox; do
    timeout 60 "$mpiexec" --oversubscribe -np 2 "$sim" --quiet --config "$work/tiny.json" \
        --set algorithm=$algorithm --set run.dir="$work/run-$algorithm" >/dev/null 2>"$work/$algorithm.err" \
        || fail "$algorithm run exited $?: $(cat "$work/$algorithm.err")"
done
"$root/launch/plot" "$work/run-fedavg" "$work/run-fedprox" --out "$work/plots" >"$work/plot.out" 2>&1 \
    || fail "launch/plot on two runs exited $?: $(cat "$work/plot.out")"
for name in accuracy loss bytes; do
    is_png "$work/plots/$name.png" || fail "$name.png is missing, empty or not a PNG"
done
grep -q "$work/plots/accuracy.png" "$work/plot.out" || fail "launch/plot did not name its files: $(cat "$work/plot.out")"

# A sweep over (T, weight) per scheme; KD keys do not change FedAvg, which
# is enough to draw the maps.
printf '{"base": "tiny.json", "group_size": 1, "output": "%s",\n "grid": {"partition.scheme": ["iid", "shards"], "kd.temperature": [1, 2], "kd.weight": [0.25, 0.5]}}\n' \
    "$work/sweep" >"$work/grid.json"
timeout 120 "$mpiexec" --oversubscribe -np 2 "${sweep_command[@]}" "$work/grid.json" --quiet \
    >/dev/null 2>"$work/sweep.err" || fail "the sweep exited $?: $(cat "$work/sweep.err")"
"$root/launch/plot" "$work/sweep" >"$work/plot-sweep.out" 2>&1 \
    || fail "launch/plot on a sweep exited $?: $(cat "$work/plot-sweep.out")"
for name in heatmap-iid heatmap-shards accuracy loss bytes; do
    is_png "$work/sweep/plots/$name.png" || fail "sweep: $name.png is missing, empty or not a PNG"
done
[ "$(wc -l <"$work/sweep/plots/best.csv")" = 3 ] || fail "best.csv: $(cat "$work/sweep/plots/best.csv")"
grep -q '^iid,' "$work/sweep/plots/best.csv" || fail "best.csv has no iid row"
# A kd-study sweep's table with several methods (the study-table fixture):
# one set of heatmaps and one best-<method>.csv per method.
mkdir -p "$work/kd"
cp "$root/tests/sweep/study_table_fixture.json" "$work/kd/results.json"
"$root/launch/plot" "$work/kd" >"$work/plot-kd.out" 2>&1 \
    || fail "launch/plot on a kd-study table exited $?: $(cat "$work/plot-kd.out")"
for method in vanilla ensemble; do
    is_png "$work/kd/plots/heatmap-$method-iid.png" || fail "kd: heatmap-$method-iid.png is missing or not a PNG"
    grep -q '^iid,' "$work/kd/plots/best-$method.csv" || fail "kd: best-$method.csv has no iid row"
done
# Bad input: a directory that is neither.
"$root/launch/plot" "$work" >"$work/bad.out" 2>&1 && fail "launch/plot accepted a directory without runs"
grep -q 'neither a run directory' "$work/bad.out" || fail "message: $(cat "$work/bad.out")"

if [ $failures != 0 ]; then
    echo "plot: $failures failure(s)" >&2
    exit 1
fi
echo "plot: passed"
