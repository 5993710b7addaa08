#!/usr/bin/env bash
# resnet8 figures for bench/README.md ("ResNet"), from the build directory:
#   bench/resnet_bench.sh [BUILD_DIR]          (default: build)
# 1. fedkd-bench-resnet: resnet8 training on synthetic CIFAR-shaped data,
#    samples/s and GFLOP/s against the same-process sgemm rate.
# 2. One FedAvg round of resnet8 at -np 16 --oversubscribe, 15 clients, on
#    CIFAR-10-format files of random images (tests/data/test_cifar.c, 200
#    records per file: 1,000 training images), wall and CPU time.
# 3. If FEDKD_CIFAR10_DIR names a directory holding the real CIFAR-10 binary
#    files, test accuracy of FedAvg + resnet8 after 20 rounds (10 clients,
#    dirichlet 0.5, augmentation); skipped otherwise, and said so.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
source "$root/launch/setup.sh"
work=$(mktemp -d /tmp/fedkd-resnet-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

"$build/bench/fedkd-bench-resnet" --model resnet8 --samples 512 --batch 32

"$build/tests/data/test_cifar" write "$work/cifar" 200
/usr/bin/time -f "fedavg round: %e s wall, %U s user + %S s system CPU (all 16 ranks)" \
    mpiexec --oversubscribe -np 16 "$build/fedkd-sim" --set mode=federated \
    --set data.name=cifar10 --set data.dir="$work/cifar" --set model=resnet8 \
    --set clients.count=15 --set partition.scheme=iid --set rounds=1 --set local.epochs=1 \
    --set local.batch_size=32 --set eval.batch_size=100 --set run.dir="$work/round" --quiet
grep -h '"round":1' "$work/round/rounds.jsonl" | tr ',' '\n' \
    | grep -E '"(bytes_down|bytes_up|train_seconds|comm_seconds|round_seconds)"' | tr '\n' ' '
echo

if [ -n "${FEDKD_CIFAR10_DIR:-}" ] && [ -f "$FEDKD_CIFAR10_DIR/data_batch_1.bin" ]; then
    mpiexec --oversubscribe -np 3 "$build/fedkd-sim" --set mode=federated \
        --set data.name=cifar10 --set data.dir="$FEDKD_CIFAR10_DIR" --set model=resnet8 \
        --set clients.count=10 --set partition.scheme=dirichlet --set partition.alpha=0.5 \
        --set rounds=20 --set local.epochs=1 --set local.batch_size=32 --set local.lr=0.05 \
        --set local.momentum=0.9 --set data.augment=true --set eval.batch_size=200 \
        --set run.dir="$work/real" --quiet
    echo "real CIFAR-10, fedavg resnet8, 20 rounds: $(grep -o '"final_accuracy":[^,]*' "$work/real/summary.json")"
else
    echo "real CIFAR-10 accuracy: skipped (FEDKD_CIFAR10_DIR is not set to a directory with data_batch_1.bin)"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
