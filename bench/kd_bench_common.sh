# Sourced by bench/kd_study_bench.sh and bench/kd_grid_bench.sh: the runner and
# the options every run of the KD benchmark shares. The pre-training options
# (data, model, clients, partition, seed, local.*, pretrain.epochs) must stay
# the same across both scripts, or the grid runs could not reuse the models.
kd_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kd_sim=${FEDKD_SIM:-$kd_root/build/fedkd-sim}
kd_np=${FEDKD_NP:-3}
kd_data=${FEDKD_DATA:-/usr/share/datasets/fashion-mnist}
kd_out=$kd_root/bench/out
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

# kd_run SCHEME SEED RUN_DIR [--set key=value ...]: one kd-study run; the
# output goes to RUN_DIR.log. SCHEME: iid, dirichletALPHA or shardsK.
kd_run() {
    local scheme=$1 seed=$2 dir=$3
    shift 3
    local partition
    case $scheme in
    iid) partition=(--set partition.scheme=iid) ;;
    dirichlet*) partition=(--set partition.scheme=dirichlet --set partition.alpha="${scheme#dirichlet}") ;;
    shards*) partition=(--set partition.scheme=shards --set partition.classes_per_client="${scheme#shards}") ;;
    quantity*) partition=(--set partition.scheme=quantity --set partition.alpha="${scheme#quantity}") ;;
    noise*) partition=(--set partition.scheme=feature-noise --set partition.sigma="${scheme#noise}") ;;
    *) echo "unknown scheme $scheme (iid, dirichletALPHA, shardsK, quantityALPHA, noiseSIGMA)" >&2; return 2 ;;
    esac
    mkdir -p "$(dirname "$dir")"
    mpirun --oversubscribe -np "$kd_np" "$kd_sim" --quiet --set mode=kd-study \
        --set data.name=fashion-mnist --set data.dir="$kd_data" --set model=mlp \
        --set clients.count=10 --set partition.min_size=10 "${partition[@]}" \
        --set seed="$seed" --set local.batch_size=64 --set local.lr=0.02 \
        --set local.momentum=0.9 --set pretrain.epochs=5 --set kd.epochs=1 \
        --set kd.temperature=1 --set kd.weight=0.5 \
        --set kd.temperature_grid=1,2,4,8,16 --set kd.weight_grid=0.1,0.25,0.5,0.75,0.9 \
        --set kd.validation_fraction=0.1 --set kd.peers=2 \
        --set run.dir="$dir" "$@" >"$dir.log" 2>&1 \
        || { echo "kd-study $scheme seed $seed failed: $(tail -3 "$dir.log")" >&2; return 1; }
}
