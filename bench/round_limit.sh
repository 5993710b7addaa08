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
#    training.
# 2. The round's work: 60000 training samples (15 clients, one local epoch)
#    plus the server's evaluation of the 10000 test images (forward only):
#        W = 60000 x train FLOPs + 10000 x forward FLOPs
#    and the limit is W / (cores x R).
# 3. R, the rate of one core while every core runs the same sgemm: `cores`
#    copies of fedkd-bench-train started together (the round keeps every
#    core busy, and a core's sgemm runs slower when the others run too).
#    This host's speed drifts within minutes, so R is measured before every
#    run and after the last; a run's limit takes the mean of the
#    measurements on either side of it. The rate of one core alone (the
#    other cores idle), measured once at the start, gives a stricter limit,
#    printed beside.
# 4. The same FedAvg round as bench/peer_bench.sh (15 clients all selected,
#    IID, batch 64, lr 0.02, momentum 0.9, -np 16), REPEATS runs of ROUNDS
#    rounds. A round is rounds.csv's round_seconds over rounds 2 .. ROUNDS
#    (round 1 includes warm-up), less the last round's own evaluation of
#    its model: every round evaluates the previous round's model while the
#    clients train (eval_overlapped 1), and the last round then evaluates
#    its own model with nothing beside it (eval_overlapped 0). Counting
#    that second evaluation would put 1 + 1 / (ROUNDS - 1) evaluations in a
#    round where W has one (the PyTorch peer does not evaluate its last
#    model at all). The mean with it is printed too.
# Prints the limit, each run's seconds per round and limit / measured (the
# target for the mlp is >= 0.8). Run it on a quiet machine: the limit
# assumes every core is free for the round.
# 5. The same with the model's nominal FLOPs (3 x 2 x forward MACs per
#    training sample, 2 x forward MACs per test image, the count the issue's
#    "60-70 GFLOP a round" uses, which includes the first layer's input
#    gradient that fedkd-sim skips) at the square 1024 sgemm's rate of one
#    core alone: model FLOPs utilisation of the cores.
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

train() {
    "$build/bench/fedkd-bench-train" --model "$model" --data "$data" --epochs 1 \
        --sgemm-seconds 1 --breakdown-steps 0 --target-accuracy 0 >"$1"
}
# The mean of the before and after rates of plain sgemm on the step's shapes
# (GFLOP per CPU second) in the given outputs of fedkd-bench-train.
step_rate() {
    sed -n 's/^plain sgemm on the step.s shapes .*(\([0-9.]*\) per CPU second)/\1/p' "$@" |
        awk '{ s += $1; n++ } END { printf "%.2f", s / n }'
}
# R with every core busy: `cores` copies at once; prints their mean rate.
all_cores_rate() {
    local tag=$1 pids=() i
    for i in $(seq 1 "$cores"); do
        train "$out/rate-$tag-$i.txt" &
        pids+=($!)
    done
    wait "${pids[@]}"
    step_rate "$out"/rate-"$tag"-*.txt
}

train "$out/train.txt"
train_flops=$(sed -n 's/^FLOPs per training sample: \([0-9.e+-]*\) in.*/\1/p' "$out/train.txt")
three_forward=$(sed -n 's/.*3 x 2 x forward MACs = \([0-9.e+-]*\).*/\1/p' "$out/train.txt")
work=$(awk -v t="$train_flops" -v f="$three_forward" 'BEGIN { printf "%.6e", 60000 * t + 10000 * f / 3 }')
alone=$(step_rate "$out/train.txt")
limit_of() { awk -v w="$work" -v c="$cores" -v r="$1" 'BEGIN { printf "%.4f", w / (c * r * 1e9) }'; }
square=$(sed -n 's/^plain sgemm 1024 x 1024 x 1024 \(before\|after\) training: \([0-9.]*\) GFLOP.*/\2/p' \
    "$out/train.txt" | tr '\n' ' ')
nominal=$(awk -v f="$three_forward" -v r="$square" -v c="$cores" 'BEGIN {
    n = split(r, x, " "); s = 0; for (i = 1; i <= n; i++) s += x[i]
    printf "%.4f", (60000 * f + 10000 * f / 3) / (c * s / n * 1e9) }')
echo "$model: $train_flops FLOPs per training sample; sgemm on the step's shapes, one core" \
    "alone: $alone GFLOP/s per CPU second, sgemm-bound round $(limit_of "$alone") s on $cores cores"
echo
echo "| run | load average before | R, all cores busy (before, after) | limit s | s/round (rounds 2-$rounds) | limit / measured | with the last round's own evaluation: s/round, ratio | ratio to the one-core limit |"
echo "|---|---|---|---|---|---|---|---|"
before=$(all_cores_rate 0)
sum_measured=0 sum_with=0 sum_limit=0
for run in $(seq 1 "$repeats"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    mpirun --oversubscribe -np "$np" "$build/fedkd-sim" --quiet --set mode=federated \
        --set algorithm=fedavg --set clients.count=$((np - 1)) --set clients.per_round=1.0 \
        --set model="$model" --set partition.scheme=iid --set rounds="$rounds" \
        --set local.epochs=1 --set local.batch_size=64 --set local.lr=0.02 \
        --set local.momentum=0.9 --set data.dir="$data" --set checkpoint.every=0 \
        --set run.dir="$out/sim-$run" >/dev/null
    after=$(all_cores_rate "$run")
    limit=$(limit_of "$(awk -v a="$before" -v b="$after" 'BEGIN { print (a + b) / 2 }')")
    # rounds.csv: column 12 eval_seconds, 13 round_seconds, 14 eval_overlapped.
    seconds=$(awk -F, 'NR > 2 { total += $13 - ($14 == 0 ? $12 : 0); n++ }
        END { printf "%.3f", total / n }' "$out/sim-$run/rounds.csv")
    with=$(awk -F, 'NR > 2 { total += $13; n++ } END { printf "%.3f", total / n }' \
        "$out/sim-$run/rounds.csv")
    ratio() { awk -v l="$1" -v s="$2" 'BEGIN { printf "%.2f", l / s }'; }
    echo "| $run | $load | $before, $after | $limit | $seconds | $(ratio "$limit" "$seconds") |" \
        "$with, $(ratio "$limit" "$with") | $(ratio "$(limit_of "$alone")" "$seconds") |"
    sum_measured=$(awk -v a="$sum_measured" -v b="$seconds" 'BEGIN { print a + b }')
    sum_with=$(awk -v a="$sum_with" -v b="$with" 'BEGIN { print a + b }')
    sum_limit=$(awk -v a="$sum_limit" -v b="$limit" 'BEGIN { print a + b }')
    before=$after
done
# The sgemm kernels the rates depend on (OpenBLAS picks them per CPU;
# OPENBLAS_CORETYPE overrides its choice).
core=$(sed -n 's/.*"blas_core":[[:space:]]*"\([^"]*\)".*/\1/p' "$out/sim-1/summary.json")
echo
echo "OpenBLAS kernels: $core (OPENBLAS_CORETYPE ${OPENBLAS_CORETYPE:-not set})"
awk -v l="$sum_limit" -v t="$sum_measured" -v w="$sum_with" -v a="$(limit_of "$alone")" \
    -v m="$nominal" -v q="$square" -v n="$repeats" 'BEGIN {
    printf "\nmean s/round %.3f, mean sgemm-bound %.3f s: limit / measured %.2f", t / n, l / n, l / t
    printf " (with the last round\047s own evaluation: %.3f s, %.2f; one core alone\047s limit %.3f s: %.2f)\n",
        w / n, l / w, a, a * n / t
    printf "nominal FLOPs at the square sgemm of one core alone (%s GFLOP/s): %.3f s, model FLOPs utilisation %.2f\n",
        q, m, m * n / t }'
