#!/usr/bin/env bash
# Hindsight grid for the KD benchmark (bench/README.md, "KD between pre-trained
# models"): vanilla KD at every (T, a) of the tuning grid, each scored on the
# test set, from the pre-trained models kd_study_bench.sh left in
# bench/out/kd-<scheme>-s<seed>/pretrained (run it first). Choosing the best
# point by its test accuracy is an upper bound for any tuning, not a method:
# it shows how much a perfect choice of (T, a) could add. Usage:
#   bench/kd_grid_bench.sh [SEEDS] [SCHEMES]      (defaults: "1" and the 4 schemes)
# Writes bench/out/kd-grid-<scheme>-s<seed>/T<T>-a<a>/ and
# bench/out/kd_grid.{md,json}; prints the markdown table on stdout.
set -euo pipefail
# shellcheck source=bench/kd_bench_common.sh
. "$(dirname "$0")/kd_bench_common.sh"
seeds=${1:-1}
schemes=${2:-iid dirichlet0.5 dirichlet0.1 shards2}
pairs=${FEDKD_KD_PAIRS:-ring}
start=$(date +%s)
grids=()
for scheme in $schemes; do
    for seed in $seeds; do
        models=$kd_out/kd-$scheme-s$seed/pretrained
        [ -d "$models" ] || { echo "$models missing: run bench/kd_study_bench.sh first" >&2; exit 2; }
        grid=$kd_out/kd-grid-$scheme-s$seed
        for t in 1 2 4 8 16; do
            for a in 0.1 0.25 0.5 0.75 0.9; do
                point=$grid/T$t-a$a
                # Finished points are kept, so an interrupted grid resumes.
                [ -s "$point/kd_summary.csv" ] || [ -e "$point.diverged" ] && continue
                if ! kd_run "$scheme" "$seed" "$point" --set kd.pairs="$pairs" \
                    --set kd.methods=vanilla --set kd.temperature="$t" --set kd.weight="$a" \
                    --set pretrain.dir="$models"; then
                    # A point where some student's training diverges is a
                    # result (the table shows it), not a failed benchmark.
                    grep -q 'loss became' "$point.log" || exit 1
                    grep -m1 'loss became' "$point.log" >"$point.diverged"
                    continue
                fi
                grep -q '"reused"' "$point/pretrain.json" \
                    || { echo "$point: the pre-trained models were not reused" >&2; exit 1; }
            done
        done
        echo "grid $scheme seed $seed: $(( $(date +%s) - start ))s so far" >&2
        grids+=("$grid")
    done
done
python3 "$kd_root/bench/kd_aggregate.py" --out "$kd_out/kd_grid" --grid "${grids[@]}"
