#!/usr/bin/env bash
# A/B of two fedkd-sim binaries on the FedAvg round of issue 13: Fashion-MNIST,
# 15 clients all selected, IID, one local epoch, batch 64, lr 0.02, momentum
# 0.9, -np 16, one BLAS thread per rank (the same flags as peer_bench.sh),
# alternated so that both see the same load. Usage (from the repository root):
#   bench/engine_ab.sh OLD_BINARY NEW_BINARY [MODEL] [ROUNDS] [PAIRS]
#   bench/engine_ab.sh /tmp/old/fedkd-sim build/fedkd-sim cnn 4 2
# Prints per run the mean s/round over rounds 2 .. ROUNDS, the mean
# train_seconds (slowest client's local training) and the last accuracy.
set -euo pipefail
old=$1 new=$2 model=${3:-cnn} rounds=${4:-4} pairs=${5:-2}
[ "$rounds" -ge 2 ] || { echo "engine_ab: ROUNDS must be at least 2" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
out=$(cd "$(dirname "$0")" && pwd)/out/engine-ab-$model
rm -rf "$out"
mkdir -p "$out"
echo "| run | binary | model | s/round (rounds 2-$rounds) | train s | accuracy after round $rounds | load average before |"
echo "|---|---|---|---|---|---|---|"
for i in $(seq 1 "$pairs"); do
    for which in old new; do
        sim=$old
        [ $which = new ] && sim=$new
        dir=$out/$which-$i
        load=$(cut -d' ' -f1 /proc/loadavg)
        mpirun --oversubscribe -np 16 "$sim" --quiet --set mode=federated --set algorithm=fedavg \
            --set clients.count=15 --set clients.per_round=1.0 --set partition.scheme=iid \
            --set model="$model" --set rounds="$rounds" --set local.epochs=1 \
            --set local.batch_size=64 --set local.lr=0.02 --set local.momentum=0.9 \
            --set run.dir="$dir" >/dev/null
        # rounds.csv: column 3 test_accuracy, 9 train_seconds, 13 round_seconds.
        awk -F, -v run="$i" -v which="$which" -v model="$model" -v load="$load" 'NR > 2 {
                n++; total += $13; train += $9 }
            { accuracy = $3 }
            END { printf "| %d | %s | %s | %.3f | %.3f | %.4f | %s |\n", run, which, model,
                  total / n, train / n, accuracy, load }' "$dir/rounds.csv"
    done
done
