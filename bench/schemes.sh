# Sourced by the bench scripts: the partition scheme names they take, as
# fedkd-sim settings.
#   settings=$(bench_scheme_settings SCHEME) || exit 2
#   read -r -a partition <<<"$settings"
# SCHEME: iid, dirichletALPHA, shardsK (K classes per client), quantityALPHA
# (client sizes from Dir(ALPHA), IID labels), noiseSIGMA (feature noise).
bench_scheme_settings() {
    case $1 in
    iid) echo "--set partition.scheme=iid" ;;
    dirichlet?*) echo "--set partition.scheme=dirichlet --set partition.alpha=${1#dirichlet}" ;;
    shards?*) echo "--set partition.scheme=shards --set partition.classes_per_client=${1#shards}" ;;
    quantity?*) echo "--set partition.scheme=quantity --set partition.alpha=${1#quantity}" ;;
    noise?*) echo "--set partition.scheme=feature-noise --set partition.sigma=${1#noise}" ;;
    *) echo "unknown scheme $1 (iid, dirichletALPHA, shardsK, quantityALPHA, noiseSIGMA)" >&2
       return 1 ;;
    esac
}
