# Sourced by bench/kd_study_bench.sh and bench/kd_grid_bench.sh: the runner and
# the options every run of the KD benchmark shares. The pre-training options
# (data, model, clients, partition, seed, local.*, pretrain.epochs) must stay
# the same across both scripts, or the grid runs could not reuse the models.
kd_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kd_sim=${FEDKD_SIM:-$kd_root/build/fedkd-sim}
kd_np=${FEDKD_NP:-3}
kd_data=${FEDKD_DATA:-/usr/share/datasets/fashion-mnist}
kd_out=$kd_root/bench/out
. "$kd_root/bench/schemes.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

# kd_settings SCHEME SEED: sets the array kd_args to the settings of every
# kd-study run of the benchmark (kd_run's, and study_sweep_bench.sh's sweep
# points'). SCHEME: see bench/schemes.sh.
kd_settings() {
    local scheme=$1 seed=$2 partition settings
    settings=$(bench_scheme_settings "$scheme") || return 2
    read -r -a partition <<<"$settings"
    kd_args=(--set mode=kd-study
        --set data.name=fashion-mnist --set data.dir="$kd_data" --set model=mlp
        --set clients.count=10 --set partition.min_size=10 "${partition[@]}"
        --set seed="$seed" --set local.batch_size=64 --set local.lr=0.02
        --set local.momentum=0.9 --set pretrain.epochs=5 --set kd.epochs=1
        --set kd.temperature=1 --set kd.weight=0.5
        --set kd.temperature_grid=1,2,4,8,16 --set kd.weight_grid=0.1,0.25,0.5,0.75,0.9
        --set kd.validation_fraction=0.1 --set kd.peers=2)
}

# kd_run SCHEME SEED RUN_DIR [--set key=value ...]: one kd-study run; the
# output goes to RUN_DIR.log.
kd_run() {
    local scheme=$1 seed=$2 dir=$3
    shift 3
    kd_settings "$scheme" "$seed" || return 2
    mkdir -p "$(dirname "$dir")"
    mpirun --oversubscribe -np "$kd_np" "$kd_sim" --quiet "${kd_args[@]}" \
        --set run.dir="$dir" "$@" >"$dir.log" 2>&1 \
        || { echo "kd-study $scheme seed $seed failed: $(tail -3 "$dir.log")" >&2; return 1; }
}
