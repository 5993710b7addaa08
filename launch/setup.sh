#!/usr/bin/env bash
# Shared set-up for launch/run and launch/test: install missing Debian
# packages (as root), configure and build with meson into build/.
# Sourced, not run: it sets FEDKD_ROOT, FEDKD_BUILD and the MPI environment.
set -euo pipefail

FEDKD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FEDKD_BUILD=${FEDKD_BUILD:-$FEDKD_ROOT/build}

FEDKD_PACKAGES=(libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-openmpi-dev hdf5-tools
    libcjson-dev zlib1g-dev meson ninja-build pkg-config gcc dataset-fashion-mnist)
# Only launch/test needs these: a private single-node SLURM for the batch
# scripts' test (tests/slurm), matplotlib for the plots' (tests/plot) and
# python3 for the sweep's study table (tests/sweep, bench/study_table.py).
FEDKD_TEST_PACKAGES=(slurm-wlm munge python3 python3-matplotlib)

# fedkd_missing_packages [PACKAGE...]: those not installed (default: FEDKD_PACKAGES).
fedkd_missing_packages() {
    local missing=() p
    [ $# -gt 0 ] || set -- "${FEDKD_PACKAGES[@]}"
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    echo "${missing[@]:-}"
}

# fedkd_install_packages [PACKAGE...]: installs the missing ones (default: FEDKD_PACKAGES).
fedkd_install_packages() {
    local missing
    missing=$(fedkd_missing_packages "$@")
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "fedkd-sim: missing Debian packages; install them with:" >&2
        echo "  sudo apt-get install -y $missing" >&2
        exit 1
    fi
    echo "fedkd-sim: installing $missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >&2
}

FEDKD_MESON_OPTIONS=(--buildtype=release)

fedkd_build() {
    if [ ! -f "$FEDKD_BUILD/build.ninja" ]; then
        meson setup "$FEDKD_BUILD" "$FEDKD_ROOT" -Dwerror=true "${FEDKD_MESON_OPTIONS[@]}" >&2
    fi
    ninja -C "$FEDKD_BUILD" >&2
}

# Open MPI refuses to run as root unless told; every rank runs one BLAS thread.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# Quiet Open MPI's warnings about a missing high-speed network on a laptop.
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader,tcp}
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}

fedkd_mpirun() {
    # Runs fedkd-sim on NP processes, oversubscribing when NP exceeds the cores.
    local np=$1
    shift
    mpirun --oversubscribe -np "$np" "$FEDKD_BUILD/fedkd-sim" "$@"
}
