#!/usr/bin/env bash
# How close a FedAvg round at -np 16 comes to the sgemm-bound limit (issue
# 13, target 2): the round's matrix products at the rate plain sgemm reaches
# on the same shapes, spread over every core.
#
#   bench/round_limit.sh [MODEL] [ROUNDS] [REPEATS]
#   bench/round_limit.sh mlp 6 3
#
# 1. fedkd-bench-train (one epoch, batch 64) prints the FLOPs its GEMMs
#    execute per training sample, 3 x the forward FLOPs, and the rate of
#    plain sgemm on the step's shapes per CPU second, before and after
#    training; their mean is the rate R.
# 2. The round's work: 60000 training samples (15 clients, one local epoch)
#    plus the server's evaluation of the 10000 test images (forward only):
#        W = 60000 x train FLOPs + 10000 x forward FLOPs
#    and the limit is W / (cores x R), with cores = nproc.
# 3. The same FedAvg round as bench/peer_bench.sh (15 clients all selected,
#    IID, batch 64, lr 0.02, momentum 0.9, -np 16), REPEATS runs of ROUNDS
#    rounds; the mean of rounds 2 .. ROUNDS of rounds.csv's round_seconds.
# Prints the limit, each run's seconds per round and limit / measured (the
# target for the mlp is >= 0.8). Run it on a quiet machine: the limit
# assumes every core is free for the round.
# 4. The same with the model's nominal FLOPs (3 x 2 x forward MACs per
#    training sample, 2 x forward MACs per test image, the count the issue's
#    "60-70 GFLOP a round" uses, which includes the first layer's input
#    gradient that fedkd-sim skips) at the square 1024 sgemm's rate: model
#    FLOPs utilisation of the cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FEDKD_BUILD:-$root/build}
model=${1:-mlp}
rounds=${2:-6}
repeats=${3:-3}
np=${FEDKD_NP:-16}
cores=${FEDKD_CORES:-$(nproc)}
data=${FEDKD_DATA:-/usr/share/datasets/fashion-mnist}
[ "$rounds" -ge 2 ] || { echo "round_limit: ROUNDS must be at least 2" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
out=$root/bench/out/round-limit-$model
rm -rf "$out"
mkdir -p "$out"

"$build/bench/fedkd-bench-train" --model "$model" --data "$data" --epochs 1 \
    --sgemm-seconds 1 --breakdown-steps 0 --target-accuracy 0 >"$out/train.txt"
train_flops=$(sed -n 's/^FLOPs per training sample: \([0-9.e+-]*\) in.*/\1/p' "$out/train.txt")
three_forward=$(sed -n 's/.*3 x 2 x forward MACs = \([0-9.e+-]*\).*/\1/p' "$out/train.txt")
rates=$(sed -n 's/^plain sgemm on the step.s shapes .*(\([0-9.]*\) per CPU second)/\1/p' \
    "$out/train.txt" | tr '\n' ' ')
limit=$(awk -v t="$train_flops" -v f="$three_forward" -v r="$rates" -v c="$cores" 'BEGIN {
    n = split(r, x, " "); s = 0; for (i = 1; i <= n; i++) s += x[i]
    rate = s / n * 1e9
    printf "%.4f", (60000 * t + 10000 * f / 3) / (c * rate) }')
square=$(sed -n 's/^plain sgemm 1024 x 1024 x 1024 \(before\|after\) training: \([0-9.]*\) GFLOP.*/\2/p' \
    "$out/train.txt" | tr '\n' ' ')
nominal=$(awk -v f="$three_forward" -v r="$square" -v c="$cores" 'BEGIN {
    n = split(r, x, " "); s = 0; for (i = 1; i <= n; i++) s += x[i]
    printf "%.4f", (60000 * f + 10000 * f / 3) / (c * s / n * 1e9) }')
echo "$model: $train_flops FLOPs per training sample, sgemm on the step's shapes" \
    "$rates GFLOP/s per CPU second (before, after), $cores cores:" \
    "sgemm-bound round $limit s"
echo
echo "| run | load average before | s/round (rounds 2-$rounds) | limit / measured |"
echo "|---|---|---|---|"
total=0
for run in $(seq 1 "$repeats"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    mpirun --oversubscribe -np "$np" "$build/fedkd-sim" --quiet --set mode=federated \
        --set algorithm=fedavg --set clients.count=$((np - 1)) --set clients.per_round=1.0 \
        --set model="$model" --set partition.scheme=iid --set rounds="$rounds" \
        --set local.epochs=1 --set local.batch_size=64 --set local.lr=0.02 \
        --set local.momentum=0.9 --set data.dir="$data" --set checkpoint.every=0 \
        --set run.dir="$out/sim-$run" >/dev/null
    # rounds.csv column 13 is round_seconds.
    seconds=$(awk -F, 'NR > 2 { total += $13; n++ } END { printf "%.3f", total / n }' \
        "$out/sim-$run/rounds.csv")
    echo "| $run | $load | $seconds | $(awk -v l="$limit" -v s="$seconds" 'BEGIN { printf "%.2f", l / s }') |"
    total=$(awk -v a="$total" -v b="$seconds" 'BEGIN { print a + b }')
done
# The sgemm kernels the rates depend on (OpenBLAS picks them per CPU;
# OPENBLAS_CORETYPE overrides its choice).
core=$(sed -n 's/.*"blas_core":[[:space:]]*"\([^"]*\)".*/\1/p' "$out/sim-1/summary.json")
echo
echo "OpenBLAS kernels: $core (OPENBLAS_CORETYPE ${OPENBLAS_CORETYPE:-not set})"
awk -v l="$limit" -v m="$nominal" -v q="$square" -v t="$total" -v n="$repeats" 'BEGIN {
    printf "\nmean s/round %.3f, sgemm-bound %.3f s: limit / measured %.2f\n", t / n, l, l * n / t
    printf "nominal FLOPs at the square sgemm (%s GFLOP/s): %.3f s, model FLOPs utilisation %.2f\n",
        q, m, m * n / t }'
