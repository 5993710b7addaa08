#!/usr/bin/env bash
# FedAvg round time of fedkd-sim against the PyTorch + mpi4py peer
# (bench/fedavg_peer.py) on the same work: Fashion-MNIST, 15 clients all
# selected, IID, one local epoch, batch 64, lr 0.02, momentum 0.9, -np 16,
# one BLAS / torch thread per rank. The two runs alternate REPEATS times so
# that both see the same load. Usage (from the repository root, after a
# build; the peer needs Debian's python3-torch and python3-mpi4py):
#   bench/peer_bench.sh [MODEL] [ROUNDS] [REPEATS]
#   bench/peer_bench.sh cnn 4 3
# Prints one markdown row per run: the mean seconds per round over rounds
# 2 .. ROUNDS (round 1 of either includes warm-up), and at the end the
# ratio fedkd-sim / peer of the means over all runs. Each round of either
# evaluates the previous round's model while the clients train; fedkd-sim's
# last round then also evaluates its own model, with nothing beside it
# (rounds.csv: eval_overlapped 0), which the peer never does. That
# evaluation is left out of fedkd-sim's figure, so that both count the same
# work; its mean with it is printed beside.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sim=${FEDKD_SIM:-$root/build/fedkd-sim}
model=${1:-cnn}
rounds=${2:-4}
repeats=${3:-3}
np=${FEDKD_NP:-16}
# Debian's interpreter, which sees python3-torch and python3-mpi4py.
python=${FEDKD_PYTHON:-/usr/bin/python3}
[ "$rounds" -ge 2 ] || { echo "peer_bench: ROUNDS must be at least 2" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
data=${FEDKD_DATA:-/usr/share/datasets/fashion-mnist}
out=$root/bench/out/peer-$model
rm -rf "$out"
mkdir -p "$out"

echo "| run | program | model | rounds | s/round (rounds 2-$rounds) | load average (1 min) before | fedkd-sim with its last round's own evaluation |"
echo "|---|---|---|---|---|---|---|"
sim_total=0
with_total=0
peer_total=0
for run in $(seq 1 "$repeats"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    mpirun --oversubscribe -np "$np" "$sim" --quiet --set mode=federated \
        --set algorithm=fedavg --set clients.count=$((np - 1)) --set clients.per_round=1.0 \
        --set model="$model" --set partition.scheme=iid --set rounds="$rounds" \
        --set local.epochs=1 --set local.batch_size=64 --set local.lr=0.02 \
        --set local.momentum=0.9 --set data.dir="$data" --set checkpoint.every=0 \
        --set run.dir="$out/sim-$run" >/dev/null
    # rounds.csv: column 12 eval_seconds, 13 round_seconds, 14 eval_overlapped.
    sim_seconds=$(awk -F, 'NR > 2 { total += $13 - ($14 == 0 ? $12 : 0); n++ }
        END { printf "%.3f", total / n }' "$out/sim-$run/rounds.csv")
    with=$(awk -F, 'NR > 2 { total += $13; n++ } END { printf "%.3f", total / n }' \
        "$out/sim-$run/rounds.csv")
    echo "| $run | fedkd-sim | $model | $rounds | $sim_seconds | $load | $with |"

    load=$(cut -d' ' -f1 /proc/loadavg)
    mpirun --oversubscribe -np "$np" "$python" "$root/bench/fedavg_peer.py" --model "$model" \
        --rounds "$rounds" --batch 64 --lr 0.02 --momentum 0.9 >"$out/peer-$run.txt"
    peer_seconds=$(awk '/^mean_round_seconds/ { print $2 }' "$out/peer-$run.txt")
    echo "| $run | peer (PyTorch) | $model | $rounds | $peer_seconds | $load | |"
    sim_total=$(awk -v a="$sim_total" -v b="$sim_seconds" 'BEGIN { print a + b }')
    with_total=$(awk -v a="$with_total" -v b="$with" 'BEGIN { print a + b }')
    peer_total=$(awk -v a="$peer_total" -v b="$peer_seconds" 'BEGIN { print a + b }')
done
# The sgemm kernels the rates depend on (OpenBLAS picks them per CPU;
# OPENBLAS_CORETYPE overrides its choice).
core=$(sed -n 's/.*"blas_core":[[:space:]]*"\([^"]*\)".*/\1/p' "$out/sim-1/summary.json")
echo
echo "OpenBLAS kernels: $core (OPENBLAS_CORETYPE ${OPENBLAS_CORETYPE:-not set})"
awk -v s="$sim_total" -v w="$with_total" -v p="$peer_total" -v n="$repeats" 'BEGIN {
    printf "\nmean s/round: fedkd-sim %.3f, peer %.3f, ratio fedkd-sim / peer %.3f", s / n, p / n, s / p
    printf " (fedkd-sim with its last round\047s own evaluation: %.3f, ratio %.3f)\n", w / n, w / p }'
