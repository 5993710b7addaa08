#!/usr/bin/env bash
# A/B of the server's evaluation overlap: the same FedAvg run (Fashion-MNIST,
# mlp, 15 clients, iid, -np 16) with two binaries, alternated so that both
# see the same machine load. Usage:
#   bench/overlap_ab.sh OLD_BINARY NEW_BINARY [PAIRS] [ROUNDS]
# Prints per run: wall seconds of the rounds (sum of round_seconds plus the
# inline evaluations), mean s/round, and the non-training share.
set -euo pipefail
old=$1 new=$2 pairs=${3:-3} rounds=${4:-10}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
out=$(cd "$(dirname "$0")" && pwd)/out/overlap-ab
rm -rf "$out"
mkdir -p "$out"
echo "| run | binary | rounds | summary wall s | mean s/round | non-train share |"
echo "|---|---|---|---|---|---|"
for i in $(seq 1 "$pairs"); do
    for which in old new; do
        sim=$old; [ $which = new ] && sim=$new
        dir=$out/$which-$i
        mpirun --oversubscribe -np 16 "$sim" --quiet --set mode=federated --set algorithm=fedavg \
            --set clients.count=15 --set partition.scheme=iid --set model=mlp \
            --set rounds="$rounds" --set local.lr=0.02 --set checkpoint.every=0 \
            --set run.dir="$dir" >/dev/null
        wall=$(python3 -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['wall_seconds'])" "$dir/summary.json")
        awk -F, -v run="$i" -v which="$which" -v wall="$wall" 'NR > 1 {
                n++; total += $13; comm += $10; agg += $11
                if ($14 != 1) inline += $12 }
            END { printf "| %d | %s | %d | %s | %.3f | %.1f%% |\n", run, which, n, wall,
                  total / n, 100 * (comm + agg + inline) / total }' "$dir/rounds.csv"
    done
done
