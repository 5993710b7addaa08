#!/usr/bin/env bash
# FedAvg on Fashion-MNIST with 15 clients at -np 16 (server + 15 client
# ranks): accuracy per round and the time breakdown per round, for each
# partition scheme and model. Usage (from the repository root, after a build):
#   bench/fedavg_bench.sh [MODELS] [SCHEMES] [ROUNDS]
#   bench/fedavg_bench.sh "mlp cnn" "iid dirichlet shards" 20
# Writes bench/out/fedavg-<model>-<scheme>/ run directories and prints one
# summary table (markdown) on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sim=${FEDKD_SIM:-$root/build/fedkd-sim}
models=${1:-mlp cnn}
schemes=${2:-iid dirichlet shards}
rounds=${3:-20}
np=${FEDKD_NP:-16}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
out=$root/bench/out
mkdir -p "$out"

echo "| model | partition | rounds | acc r1 | acc r5 | acc r10 | acc final | best | s/round | train s | comm s | aggregate s | eval s (overlapped) | non-train share |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for model in $models; do
    for scheme in $schemes; do
        dir=$out/fedavg-$model-$scheme
        label=$scheme
        extra=()
        case $scheme in
        dirichlet) extra=(--set partition.alpha=0.5); label="dirichlet(0.5)" ;;
        shards) extra=(--set partition.classes_per_client=2); label="2 classes/client" ;;
        esac
        # One learning rate for every scheme: 0.05 diverges (NaN) on the
        # 2-classes-per-client split, 0.02 trains on all three.
        lr=${FEDKD_LR:-0.02}
        mpirun --oversubscribe -np "$np" "$sim" --quiet --set mode=federated \
            --set algorithm=fedavg --set clients.count=15 --set clients.per_round=1.0 \
            --set model="$model" --set partition.scheme="$scheme" "${extra[@]}" \
            --set rounds="$rounds" --set local.epochs=1 --set local.lr=$lr \
            --set run.dir="$dir" >/dev/null
        # Columns of rounds.csv: round,participants,test_accuracy,test_loss,train_loss,
        # bytes_down,bytes_up,wire_bytes,train_seconds,comm_seconds,aggregate_seconds,
        # eval_seconds,round_seconds,eval_overlapped. An overlapped evaluation
        # ran while the clients trained the next round: it is not part of
        # round_seconds and not counted in the non-training share.
        awk -F, -v model="$model" -v scheme="$label" 'NR > 1 {
                n++; acc[n] = $3; if ($3 > best) best = $3
                train += $9; comm += $10; agg += $11; ev += $12; total += $13
                if ($14 == 1) hidden += $12; else inline += $12 }
            END {
                printf "| %s | %s | %d | %.4f | %.4f | %.4f | %.4f | %.4f | %.2f | %.2f | %.3f | %.3f | %.3f (%.0f%%) | %.1f%% |\n",
                    model, scheme, n, acc[1], acc[5], acc[10], acc[n], best, total / n,
                    train / n, comm / n, agg / n, ev / n, 100 * hidden / ev,
                    100 * (comm + agg + inline) / total }' \
            "$dir/rounds.csv"
    done
done
