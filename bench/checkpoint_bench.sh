#!/usr/bin/env bash
# Checkpoint benchmark (bench/README.md, "Checkpoints"):
#   1. write / read time and file size for the mlp and cnn presets at 16 and
#      1000 clients, without and with one model-sized state row per client,
#      at -np 16 (fedkd-bench-checkpoint);
#   2. the overhead of checkpointing every round in a real run: Fashion-MNIST,
#      mlp, 15 clients, -np 16, checkpoint.every=1 against every=0 (only the
#      final checkpoint), alternated.
#
#   bench/checkpoint_bench.sh [BUILD_DIR [OUT_DIR [ROUNDS [PAIRS]]]]
# BUILD_DIR defaults to build/, OUT_DIR to bench/out/checkpoint (checkpoint
# files of up to 800 MB are written there and deleted), ROUNDS to 10, PAIRS
# (every=1 / every=0 run pairs) to 3.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
out=${2:-$root/bench/out/checkpoint}
rounds=${3:-10}
pairs=${4:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
mpirun=(mpiexec --oversubscribe -np 16)
mkdir -p "$out"
echo "# $(date -u +%FT%TZ) $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "## 1. write / read (medians of the repetitions; seconds; -np 16)"
echo "model clients state  ranks        bytes   write_s    read_s rows_read_s  mode"
for model in mlp cnn; do
    for clients in 16 1000; do
        for state in none model; do
            reps=5
            [ "$state" = model ] && [ "$clients" = 1000 ] && reps=3
            line=$("${mpirun[@]}" "$build/bench/fedkd-bench-checkpoint" --model $model \
                --clients $clients --state $state --reps $reps --dir "$out/files" 2>/dev/null)
            mode=$([ "$state" = model ] && echo "MPI-IO, every rank" || echo "rank 0 alone")
            echo "$line  $mode"
            if [ "$state" = none ]; then
                line=$(FEDKD_CHECKPOINT_MPIIO=1 "${mpirun[@]}" -x FEDKD_CHECKPOINT_MPIIO \
                    "$build/bench/fedkd-bench-checkpoint" --model $model --clients $clients \
                    --state none --reps $reps --dir "$out/files" 2>/dev/null)
                echo "$line  MPI-IO forced"
            fi
        done
    done
done

echo "## 2. overhead of checkpoint.every=1 (fashion-mnist, mlp, 15 clients, -np 16, $rounds rounds)"
# The federation stalls for the whole checkpoint write (every rank waits in
# it), so its overhead is the write time rank 0 logs ("written in X s") over
# the round time (rounds.jsonl round_seconds, which leaves the checkpoint
# out). Wall-clock totals of every=1 and every=0 runs are printed too, but on
# a shared machine their difference is mostly noise.
mean_field() { grep -o "\"$2\":[0-9.e+-]*" "$1/rounds.jsonl" | cut -d: -f2 | awk '{s += $1} END {printf "%.4f", s / NR}'; }
wall() { grep -o '"wall_seconds":[[:space:]]*[0-9.e+-]*' "$1/summary.json" | grep -o '[0-9.e+-]*$'; }
printf '%-5s %5s %13s %12s %14s %10s %10s\n' pair every round_s_mean checkpoints checkpoint_s_mean overhead wall_s
overheads=()
for pair in $(seq 1 "$pairs"); do
    for every in 1 0; do
        dir="$out/run-every$every"
        rm -rf "$dir"
        "${mpirun[@]}" "$build/fedkd-sim" --set rounds="$rounds" --set checkpoint.every=$every \
            --set run.dir="$dir" >"$dir.log" 2>&1
        ckpt=$(grep -o 'written in [0-9.]*s' "$dir.log" | grep -o '[0-9.]*' | awk '{s += $1} END {printf "%.4f", s / NR}')
        count=$(grep -c 'written in' "$dir.log")
        round_mean=$(mean_field "$dir" round_seconds)
        share=$(awk -v c="$ckpt" -v r="$round_mean" 'BEGIN {printf "%.2f%%", 100 * c / r}')
        [ $every = 1 ] && overheads+=("$(awk -v c="$ckpt" -v r="$round_mean" 'BEGIN {print 100 * c / r}')")
        printf '%-5s %5s %13s %12s %14s %10s %10.2f\n' "$pair" "$every" "$round_mean" "$count" "$ckpt" \
            "$share" "$(wall "$dir")"
    done
done
printf '%s\n' "${overheads[@]}" | sort -g | awk '{v[NR] = $1} END {
    printf "checkpoint.every=1 overhead per round: median %.2f%% (min %.2f%%, max %.2f%%) over %d runs\n",
        v[int((NR + 1) / 2)], v[1], v[NR], NR }'
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
