#!/usr/bin/env bash
# Rounds to target: for each federated algorithm and partition scheme, the
# rounds, payload bytes and wall time until the global model first reaches
# the target test accuracy, over several seeds. Fashion-MNIST, mlp.
#
#   bench/rtt_bench.sh [ALGORITHMS] [SEEDS] [SCHEMES] [PROFILES]
#   bench/rtt_bench.sh "fedavg fedprox" "1 2 3" "iid dirichlet0.5 dirichlet0.1 shards2"
#   bench/rtt_bench.sh "fedavg fedmd" 1 dirichlet0.5 "lan 4g deadline-dropout"
#
# PROFILES (default: none) are simulated networks, configs/network/<name>.json
# (README "Simulated network, dropouts and compressed uploads"); "none" runs
# without one. A run with a profile writes ...-s<seed>-<profile>/ and the
# table gains the simulated seconds to target.
# ALGORITHMS are values of the config key `algorithm` (any the simulator
# knows: fedavg, fedprox, feddf, fedmd, dsfl, fd, dml).
# SCHEMES: iid, dirichletALPHA, shardsK (K classes per client), quantityALPHA
# (client sizes from Dir(ALPHA)), noiseSIGMA (feature noise). Each run
# writes $FEDKD_BENCH_OUT/<algorithm>-<scheme>-s<seed>/; a run that
# completed with the same settings is reused, so an interrupted benchmark
# continues where it stopped (delete the directory to measure again).
# Then bench/rtt_table.py prints the markdown table (and, with
# python3-matplotlib, rtt.png and rtt-accuracy.png in the output directory).
#
# Environment (defaults): FEDKD_SIM (build/fedkd-sim), FEDKD_NP (4),
# FEDKD_TARGET (0.80), FEDKD_ROUNDS (30), FEDKD_CLIENTS (15), FEDKD_LR (0.02:
# 0.05 diverges on 2 classes per client), FEDKD_DATA (the Fashion-MNIST
# directory), FEDKD_BENCH_OUT (bench/out/rtt). Extra settings for every run:
# FEDKD_EXTRA="--set fedprox.mu=0.1".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sim=${FEDKD_SIM:-$root/build/fedkd-sim}
algorithms=${1:-fedavg fedprox}
seeds=${2:-1 2 3}
schemes=${3:-iid dirichlet0.5 dirichlet0.1 shards2}
profiles=${4:-none}
np=${FEDKD_NP:-4}
target=${FEDKD_TARGET:-0.80}
rounds=${FEDKD_ROUNDS:-30}
clients=${FEDKD_CLIENTS:-15}
lr=${FEDKD_LR:-0.02}
data=${FEDKD_DATA:-/usr/share/datasets/fashion-mnist}
out=${FEDKD_BENCH_OUT:-$root/bench/out/rtt}
read -r -a extra <<<"${FEDKD_EXTRA:-}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader,tcp}
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
[ -x "$sim" ] || { echo "rtt_bench: $sim is not built" >&2; exit 1; }
mkdir -p "$out"

. "$root/bench/schemes.sh"

echo "load before: $(uptime)" >&2
failed=0
for profile in $profiles; do
profile_config=()
suffix=
if [ "$profile" != none ]; then
    profile_config=(--config "$root/configs/network/$profile.json")
    [ -f "${profile_config[1]}" ] || { echo "rtt_bench: no network profile ${profile_config[1]}" >&2; exit 2; }
    suffix=-$profile
fi
for scheme in $schemes; do
    settings=$(bench_scheme_settings "$scheme") || exit 2
    read -r -a partition <<<"$settings"
    for algorithm in $algorithms; do
        for seed in $seeds; do
            dir=$out/$algorithm-$scheme-s$seed$suffix
            settings=("${profile_config[@]}" --set mode=federated --set algorithm="$algorithm" --set data.name=fashion-mnist
                --set data.dir="$data" --set model=mlp --set clients.count="$clients"
                --set clients.per_round=1.0 "${partition[@]}" --set seed="$seed"
                --set rounds="$rounds" --set target_accuracy="$target" --set local.epochs=1
                --set local.lr="$lr" --set checkpoint.every=0 "${extra[@]}" --set run.dir="$dir")
            # A finished run with the same settings is kept.
            if grep -qs '"status":[[:space:]]*"completed"' "$dir/summary.json" &&
                [ "$(cat "$dir/settings" 2>/dev/null)" = "${settings[*]}" ]; then
                continue
            fi
            rm -rf "$dir"
            mkdir -p "$dir"
            start=$(date +%s)
            if mpirun --oversubscribe -np "$np" "$sim" --quiet "${settings[@]}" >"$dir/log" 2>&1; then
                echo "${settings[*]}" >"$dir/settings"
                echo "  $(date +%T) $algorithm $scheme seed $seed $profile: $(( $(date +%s) - start )) s (load $(cut -d" " -f1-3 /proc/loadavg))" >&2
            else
                echo "rtt_bench: $algorithm $scheme seed $seed failed: $(tail -2 "$dir/log")" >&2
                failed=$((failed + 1))
            fi
        done
    done
done
done
echo "load after: $(uptime)" >&2
echo "settings: -np $np, $clients clients (all per round), mlp, lr $lr, $rounds rounds, target $target" >&2
/usr/bin/python3 "$root/bench/rtt_table.py" "$out" --algorithms "$algorithms" --schemes "$schemes" \
    --seeds "$seeds" --target "$target" --rounds "$rounds" --profiles "$profiles"
[ "$failed" = 0 ] || { echo "rtt_bench: $failed run(s) failed" >&2; exit 1; }
