#!/usr/bin/env bash
# Start-up of a federation (issue 13, target 3): summary.json's
# setup_seconds (MPI_Init to the first round, the slowest rank) of a
# one-round FedAvg run on Fashion-MNIST (mlp, 15 clients, the default
# partition), for two fedkd-sim binaries alternated PAIRS times so that
# both see the same load. Both must write setup_seconds (commit 29a3ef7 or
# later). Usage, from the repository root:
#   bench/setup_bench.sh OLD_SIM NEW_SIM [PAIRS] [NP]
#   bench/setup_bench.sh /tmp/old/build/fedkd-sim build/fedkd-sim 3 16
# One markdown row per run, then the mean of NEW / OLD over the pairs. The
# final model checksums must agree (the data loading does not change them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old=${1:?usage: setup_bench.sh OLD_SIM NEW_SIM [PAIRS] [NP]}
new=${2:?usage: setup_bench.sh OLD_SIM NEW_SIM [PAIRS] [NP]}
pairs=${3:-3}
np=${4:-16}
data=${FEDKD_DATA:-/usr/share/datasets/fashion-mnist}
out=${FEDKD_BENCH_OUT:-$root/bench/out/setup}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$out"
mkdir -p "$out"

field() { # field NAME SUMMARY: a number or string of summary.json
    sed -n "s/.*\"$1\":[[:space:]]*\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" "$2" | head -1
}

echo "| pair | binary | load average before | setup_seconds | wire_bytes_setup | params_checksum |"
echo "|---|---|---|---|---|---|"
ratios=""
for pair in $(seq 1 "$pairs"); do
    for which in old new; do
        sim=$old
        [ "$which" = new ] && sim=$new
        dir="$out/$which-$pair"
        load=$(cut -d' ' -f1 /proc/loadavg)
        mpirun --oversubscribe -np "$np" "$sim" --quiet --set mode=federated --set rounds=1 \
            --set data.dir="$data" --set checkpoint.every=0 --set run.dir="$dir" >"$dir.log" 2>&1
        seconds=$(field setup_seconds "$dir/summary.json")
        echo "| $pair | $which | $load | $seconds | $(field wire_bytes_setup "$dir/summary.json") |" \
            "$(field params_checksum "$dir/summary.json") |"
        eval "seconds_$which=$seconds"
    done
    ratios="$ratios $(awk -v a="$seconds_new" -v b="$seconds_old" 'BEGIN { print a / b }')"
done
echo
echo "$ratios" | awk '{ for (i = 1; i <= NF; i++) { s += $i; line = line sprintf(" %.2f", $i) }
    printf "setup_seconds new / old per pair:%s; mean %.2f\n", line, s / NF }'
