#!/usr/bin/env bash
# The KD study's table from `fedkd-sim sweep` on Fashion-MNIST: for each
# partition scheme, one sweep over the study's (T, weight) grid (T in 1, 2, 4,
# 8, 16; weight in 0.1, 0.25, 0.5, 0.75, 0.9: 25 points), each point a
# kd-study of vanilla, ensemble and partition-aware KD over the 10 ring pairs,
# from the models bench/kd_study_bench.sh pre-trained (copied, so that a
# mismatch retrains the copies, never the originals); then
# bench/study_table.py pools the sweeps into the study's table.
#
#   bench/study_sweep_bench.sh [SCHEMES] [SEED]
#   bench/study_sweep_bench.sh "iid dirichlet0.5 dirichlet0.1 shards2" 1
#
# The settings are kd_bench_common.sh's kd_settings (10 clients, mlp, lr
# 0.02, 5 pre-training epochs, 1 KD epoch), given to the sweep as --set. Each sweep runs in one group of FEDKD_NP
# (3) ranks and writes bench/out/study-sweep/<scheme>-s<seed>/ (results.json
# and .csv, point-NNNN/); an interrupted sweep, run again, skips its finished
# points. A run whose training diverges is counted in its point's
# kd.<method>.diverged column, and the table never picks a (T, weight) cell
# with such a run. The table goes to bench/out/study-sweep/study_table.md.
set -euo pipefail
. "$(dirname "$0")/kd_bench_common.sh"
schemes=${1:-iid dirichlet0.5 dirichlet0.1 shards2}
seed=${2:-1}
out=$kd_out/study-sweep
[ -x "$kd_sim" ] || { echo "study_sweep_bench: $kd_sim is not built" >&2; exit 1; }
mkdir -p "$out"

echo "load before: $(uptime)" >&2
dirs=()
for scheme in $schemes; do
    models=$kd_out/kd-$scheme-s$seed/pretrained
    [ -d "$models" ] || { echo "$models missing: run bench/kd_study_bench.sh \"$seed\" $scheme first" >&2; exit 2; }
    dir=$out/$scheme-s$seed
    mkdir -p "$dir/pretrained"
    cp -n "$models"/*.h5 "$dir/pretrained/"
    # The base is empty: every setting is kd_run's (kd_bench_common.sh),
    # given to the sweep as --set, which its grid values override.
    echo '{}' >"$dir/base.json"
    kd_settings "$scheme" "$seed" || exit 2
    cat >"$dir/grid.json" <<EOF
{"description": "The study's (T, weight) grid under $scheme, seed $seed (bench/study_sweep_bench.sh).",
 "base": "base.json", "group_size": $kd_np, "output": "$dir",
 "grid": {"kd.temperature": [1, 2, 4, 8, 16], "kd.weight": [0.1, 0.25, 0.5, 0.75, 0.9]}}
EOF
    start=$(date +%s)
    mpirun --oversubscribe -np "$kd_np" "$kd_sim" sweep "$dir/grid.json" "${kd_args[@]}" \
        --set pretrain.dir="$dir/pretrained" --set kd.methods=vanilla,ensemble,partition-aware \
        --set kd.pairs=ring >"$dir.log" 2>&1 ||
        { echo "sweep $scheme failed: $(tail -3 "$dir.log")" >&2; exit 1; }
    if grep -qs '"retrained"\|"trained"' "$dir"/point-*/pretrain.json; then
        echo "$dir: the pre-trained models were not reused (fingerprint mismatch)" >&2
        exit 1
    fi
    echo "sweep $scheme seed $seed: $(( $(date +%s) - start )) s (load $(cut -d" " -f1-3 /proc/loadavg))" >&2
    dirs+=("$dir")
done
echo "load after: $(uptime)" >&2
/usr/bin/python3 "$kd_root/bench/study_table.py" "${dirs[@]}" --out "$out/study_table.md"
