#!/usr/bin/env bash
# Scaling of FedAvg with the number of processes: time per round and peak
# memory per rank, Fashion-MNIST, mlp, one local epoch, the default job's
# Dirichlet(0.5) partition (valid for 1000 clients too: every client gets
# its partition.min_size of 10 samples).
#
#   bench/scaling_bench.sh [PROCESSES] [SETUPS] [ROUNDS] [REPEATS]
#   bench/scaling_bench.sh "2 4 8 16" "15:1.0 1000:1.0 1000:0.1" 3 2
#
# A setup is CLIENTS:PER_ROUND (clients.count and clients.per_round). Each
# (setup, P) runs REPEATS times, alternating setups and process counts so
# that a burst of load from other jobs hits no single cell twice. Each rank
# runs under bench/peak_rss.py, which records its peak resident set
# (getrusage of the child) without touching the simulator. One markdown row
# per (setup, P) on stdout:
#   s/round       mean round_seconds (rounds.csv: the server's whole round)
#                 over rounds 2..ROUNDS: the smallest of the repeats, and
#                 the largest (s/round max)
#   round 1       the first round (min over repeats)
#   train         mean train_seconds over rounds 2..ROUNDS (the slowest
#                 client rank's local training), min over repeats
#   set-up        summary.json's wall_seconds minus the rounds' round_seconds:
#                 the server's time before round 1 (reading data, partition,
#                 model) and after the last round, min over repeats
#   wall          mpirun start to end (MPI start-up, set-up, rounds, final
#                 checkpoint, exit), min over repeats
#   RSS           peak resident set: the server (rank 0), the largest and the
#                 mean of the client ranks, and all ranks together (max over
#                 repeats)
#   above data    the largest client rank's peak resident set minus the
#                 features and labels it hosts (client c is on rank
#                 1 + c mod (P - 1); its size from partition.json, 28 x 28
#                 floats and a label a sample), max over ranks and repeats
# Environment: FEDKD_SIM (default build/fedkd-sim), FEDKD_DATA (the
# Fashion-MNIST directory), FEDKD_BENCH_OUT (default bench/out/scaling),
# FEDKD_TABLE_ONLY=1 (no runs: the table of the runs already in the output),
# FEDKD_PARTITION (default "--set partition.scheme=dirichlet
# --set partition.alpha=0.5").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sim=${FEDKD_SIM:-$root/build/fedkd-sim}
data=${FEDKD_DATA:-/usr/share/datasets/fashion-mnist}
processes=${1:-2 4 8 16}
setups=${2:-15:1.0 1000:1.0 1000:0.1}
rounds=${3:-3}
repeats=${4:-2}
out=${FEDKD_BENCH_OUT:-$root/bench/out/scaling}
wrapper=$root/bench/peak_rss.py
read -r -a partition <<<"${FEDKD_PARTITION:---set partition.scheme=dirichlet --set partition.alpha=0.5}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader,tcp}
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
[ -x "$sim" ] || { echo "scaling_bench: $sim is not built" >&2; exit 1; }
[ -x /usr/bin/python3 ] || { echo "scaling_bench: /usr/bin/python3 is needed for bench/peak_rss.py" >&2; exit 1; }
[ "$rounds" -ge 2 ] || { echo "scaling_bench: ROUNDS must be at least 2" >&2; exit 1; }
mkdir -p "$out"

[ "${FEDKD_TABLE_ONLY:-0}" = 1 ] && repeats_to_run=0 || repeats_to_run=$repeats
echo "load before: $(uptime)" >&2
for repeat in $(seq 1 "$repeats_to_run"); do
    for setup in $setups; do
        clients=${setup%%:*} per_round=${setup#*:}
        for np in $processes; do
            dir=$out/c$clients-r$per_round-np$np-rep$repeat
            rm -rf "$dir"
            mkdir -p "$dir"
            start=$(date +%s.%N)
            mpirun --oversubscribe -np "$np" /usr/bin/python3 "$wrapper" "$dir/rss" "$sim" --quiet \
                --set mode=federated --set algorithm=fedavg --set data.name=fashion-mnist \
                --set data.dir="$data" --set model=mlp --set clients.count="$clients" \
                --set clients.per_round="$per_round" "${partition[@]}" \
                --set rounds="$rounds" --set local.epochs=1 --set local.lr=0.05 \
                --set checkpoint.every=0 --set run.dir="$dir/run" >"$dir/log" 2>&1 \
                || { echo "scaling_bench: $clients clients, per_round $per_round, -np $np failed:" \
                          "$(tail -3 "$dir/log")" >&2; exit 1; }
            end=$(date +%s.%N)
            echo "$start $end" | awk '{ printf "%.3f\n", $2 - $1 }' >"$dir/wall"
            echo "  $(date +%T) $clients clients x $per_round, -np $np, repeat $repeat: $(cat "$dir/wall") s (load $(cut -d" " -f1-3 /proc/loadavg))" >&2
        done
    done
done
echo "load after: $(uptime)" >&2

echo "| clients | per round | P | s/round | s/round max | round 1 s | train s | set-up s | wall s | RSS rank 0 (MiB) | RSS client max (MiB) | RSS client mean (MiB) | RSS all ranks (MiB) | client RSS above its data, max (MiB) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for setup in $setups; do
    clients=${setup%%:*} per_round=${setup#*:}
    for np in $processes; do
        for repeat in $(seq 1 "$repeats"); do
            dir=$out/c$clients-r$per_round-np$np-rep$repeat
            # rounds.csv: round,participants,test_accuracy,test_loss,train_loss,bytes_down,
            # bytes_up,wire_bytes,train_seconds,comm_seconds,aggregate_seconds,eval_seconds,
            # round_seconds
            wall_seconds=$(sed -n 's/^[[:space:]]*"wall_seconds":[[:space:]]*\([0-9.eE+-]*\),*$/\1/p' \
                "$dir/run/summary.json")
            awk -F, -v wall="$wall_seconds" '
                NR == 2 { first = $13 } NR > 1 { all += $13 } NR > 2 { n++; round += $13; train += $9 }
                END { printf "%.4f %.4f %.4f %.4f ", round / n, first, train / n, wall - all }' \
                "$dir/run/rounds.csv"
            tr '\n' ' ' <"$dir/wall"
            # rss-<rank>.txt in KiB: rank 0 is the server. Each line: rank,
            # peak KiB, KiB of features and labels the rank hosts.
            /usr/bin/python3 - "$dir" "$np" <<'PY' | awk '{ rank = $1 + 0; kib = $2
                    if (rank == 0) server = kib
                    else { n++; sum += kib; if (kib > top) top = kib
                           if (n == 1 || kib - $3 > above) above = kib - $3 }
                    all += kib }
                END { printf "%.1f %.1f %.1f %.1f %.1f\n", server / 1024, top / 1024,
                          (n ? sum / n : 0) / 1024, all / 1024, above / 1024 }'
import glob, json, os, sys
run, np = sys.argv[1], int(sys.argv[2])
sizes = [c["size"] for c in json.load(open(os.path.join(run, "run", "partition.json")))["clients"]]
hosted = [0] * np
for client, size in enumerate(sizes):
    hosted[1 + client % (np - 1) if np > 1 else 0] += size
for path in glob.glob(os.path.join(run, "rss", "rss-*.txt")):
    rank = int(path.rsplit("rss-", 1)[1].split(".")[0])
    print(rank, int(open(path).read()), hosted[rank] * (28 * 28 * 4 + 4) / 1024)
PY
        done | awk -v clients="$clients" -v per_round="$per_round" -v np="$np" '
            { n++; if (n == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1
              if (n == 1 || $2 < first) first = $2; if (n == 1 || $3 < train) train = $3
              if (n == 1 || $4 < setup) setup = $4; if (n == 1 || $5 < wall) wall = $5
              if ($6 > s0) s0 = $6; if ($7 > cmax) cmax = $7; if ($8 > cmean) cmean = $8
              if ($9 > all) all = $9; if (n == 1 || $10 > above) above = $10 }
            END { printf "| %d | %s | %d | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | %.1f |\n",
                      clients, per_round, np, lo, hi, first, train, setup, wall, s0, cmax, cmean, all, above }'
    done
done
