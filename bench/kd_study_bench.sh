#!/usr/bin/env bash
# KD between pre-trained models on Fashion-MNIST (bench/README.md, "KD between
# pre-trained models"): for each partition scheme and seed, one kd-study run
# (pre-training of 10 client models, then vanilla, tuned, ensemble, DML and
# partition-aware KD for every student), then one table per scheme over all
# pairs and seeds, and the study's comparison of tuned KD against the best
# untuned method. Usage, from the repository root after a build:
#   bench/kd_study_bench.sh [SEEDS] [SCHEMES]
#   bench/kd_study_bench.sh "1 2 3" "iid dirichlet0.5 dirichlet0.1 shards2"
# Environment: FEDKD_SIM (default build/fedkd-sim), FEDKD_NP (ranks, default 3: rank 0 and two
# client ranks on a 2-core machine), FEDKD_DATA (Fashion-MNIST directory),
# FEDKD_KD_PAIRS (default ring), FEDKD_KD_EXTRA (more --set options).
# Writes bench/out/kd-<scheme>-s<seed>/ run directories and
# bench/out/kd_bench.{md,csv,json}; prints the markdown tables on stdout.
set -euo pipefail
# shellcheck source=bench/kd_bench_common.sh
. "$(dirname "$0")/kd_bench_common.sh"
seeds=${1:-1 2 3}
schemes=${2:-iid dirichlet0.5 dirichlet0.1 shards2}
pairs=${FEDKD_KD_PAIRS:-ring}
mkdir -p "$kd_out"

dirs=()
start=$(date +%s)
for scheme in $schemes; do
    for seed in $seeds; do
        dir=$kd_out/kd-$scheme-s$seed
        t0=$(date +%s)
        # shellcheck disable=SC2086
        kd_run "$scheme" "$seed" "$dir" --set kd.pairs="$pairs" \
            --set kd.methods=vanilla,tuned,ensemble,dml,partition-aware ${FEDKD_KD_EXTRA:-}
        echo "kd-study $scheme seed $seed: $(( $(date +%s) - t0 ))s" >&2
        dirs+=("$dir")
    done
done
echo "all runs: $(( $(date +%s) - start ))s wall on $(nproc) core(s), -np $kd_np" >&2
python3 "$kd_root/bench/kd_aggregate.py" --out "$kd_out/kd_bench" "${dirs[@]}"
