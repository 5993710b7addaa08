#!/usr/bin/env bash
# KD-consolidated start on Fashion-MNIST (bench/README.md, "KD-consolidated
# start"): for each partition scheme and seed, one `fedkd-sim` kd-start run
# (pre-training of the 15 clients' models, the average of their weights, a
# student distilled from their ensemble on a 5000-image public set, then
# FedAvg from the seeded initialisation, the average and the student), then
# one table over the seeds per scheme. Usage, from the repository root after
# a build:
#   bench/kd_start_bench.sh [SEEDS] [SCHEMES]
#   bench/kd_start_bench.sh "1 2 3" "iid dirichlet0.5 dirichlet0.1 shards2"
# Environment: FEDKD_SIM (default build/fedkd-sim), FEDKD_NP (ranks, default
# 4), FEDKD_DATA (Fashion-MNIST directory), FEDKD_ROUNDS (default 20),
# FEDKD_KD_START_EXTRA (more --set options for every run).
# Target accuracy per scheme: what FedAvg from random weights reached after 5
# rounds with seed 1, rounded down to 0.01 (a rule that does not look at the
# consolidated starts): iid 0.85, dirichlet0.5 0.84, dirichlet0.1 0.69,
# shards2 0.60. FEDKD_TARGET_<scheme> overrides one (dots become underscores:
# FEDKD_TARGET_dirichlet0_1=0.65).
# Writes bench/out/kd-start-<scheme>-s<seed>/ run directories and
# bench/out/kd_start_bench.{md,json}; prints the markdown table on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/schemes.sh"
sim=${FEDKD_SIM:-$root/build/fedkd-sim}
np=${FEDKD_NP:-4}
data=${FEDKD_DATA:-/usr/share/datasets/fashion-mnist}
rounds=${FEDKD_ROUNDS:-20}
seeds=${1:-1 2 3}
schemes=${2:-iid dirichlet0.5 dirichlet0.1 shards2}
out=$root/bench/out
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$out"

target_of() {
    local variable="FEDKD_TARGET_${1//./_}"
    if [ -n "${!variable:-}" ]; then echo "${!variable}"; return; fi
    case $1 in
    iid) echo 0.85 ;;
    dirichlet0.5) echo 0.84 ;;
    dirichlet0.1) echo 0.69 ;;
    shards2) echo 0.60 ;;
    *) echo 0.80 ;;
    esac
}

dirs=()
start=$(date +%s)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for scheme in $schemes; do
    settings=$(bench_scheme_settings "$scheme") || exit 2
    read -r -a partition <<<"$settings"
    for seed in $seeds; do
        dir=$out/kd-start-$scheme-s$seed
        t0=$(date +%s)
        # shellcheck disable=SC2086
        mpirun --oversubscribe -np "$np" "$sim" --quiet --set mode=kd-start \
            --set data.name=fashion-mnist --set data.dir="$data" --set data.train_limit=0 \
            --set data.test_limit=0 --set model=mlp --set algorithm=fedavg \
            --set clients.count=15 --set clients.per_round=1.0 --set partition.min_size=10 \
            "${partition[@]}" --set seed="$seed" --set public.size=5000 \
            --set public.source=train-holdout --set pretrain.epochs=2 --set kd.epochs=5 \
            --set kd.temperature=1 --set kd.ensemble=probs --set local.epochs=1 \
            --set local.batch_size=64 --set local.lr=0.02 --set local.momentum=0.9 \
            --set rounds="$rounds" --set target_accuracy="$(target_of "$scheme")" \
            --set run.dir="$dir" ${FEDKD_KD_START_EXTRA:-} >"$dir.log" 2>&1 \
            || { echo "kd-start $scheme seed $seed failed: $(tail -3 "$dir.log")" >&2; exit 1; }
        echo "kd-start $scheme seed $seed: $(( $(date +%s) - t0 ))s, load $(cut -d' ' -f1 /proc/loadavg)" >&2
        dirs+=("$dir")
    done
done
echo "all runs: $(( $(date +%s) - start ))s wall on $(nproc) core(s), -np $np;" \
     "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 "$root/bench/kd_start_aggregate.py" --out "$out/kd_start_bench" "${dirs[@]}"
