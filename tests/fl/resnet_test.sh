#!/usr/bin/env bash
# MPI tests of normalisation layers, residual blocks and FedBN (issue 14,
# part 2), run by meson test:
#   resnet_test.sh CASE MPIEXEC FEDKD_SIM CHECK_RUN TEST_CIFAR
# CASE is resnet8, fedbn or bad-input. Data: CIFAR-10 files of 12 records
# each (tests/data/test_cifar.c), 60 training images on 4 clients.
# "Bit-identical" is check_run `same`: every deterministic field of every
# rounds.jsonl row and the final model's checksum.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 check=$4 test_cifar=$5

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin resnet

run() { test_run 300 "$sim" "$@" --quiet; } # run NP RUN_DIR [args...]

"$test_cifar" write "$work/cifar" 12 || { echo "FAIL: writing CIFAR files" >&2; exit 1; }
# Batches of 7 on clients of 15 images: each epoch ends on a minibatch of
# one image, which a model with batchnorm skips (README, "Models").
cifar=(--set mode=federated --set data.name=cifar10 --set data.dir="$work/cifar"
    --set clients.count=4 --set clients.per_round=0.75 --set partition.scheme=iid
    --set partition.min_size=1 --set local.batch_size=7 --set local.lr=0.05 --set rounds=2
    --set eval.batch_size=32) # resnet8's activations for 1000 test images take 1 GB
resnet8_params=79050 # tests/nn/test_resnet.c counts it layer by layer
resnet8_norm=1344    # 4 floats per normalised channel, 336 channels
small='[{"type":"conv2d","filters":4,"kernel":3,"stride":2,"padding":1},{"type":"batchnorm"},{"type":"relu"},
 {"type":"residual","projection":"conv","layers":[{"type":"conv2d","filters":6,"kernel":3,"stride":2,"padding":1},{"type":"groupnorm","groups":2}]},
 {"type":"avgpool","global":true},{"type":"flatten"},{"type":"dense","units":10}]'

case $case_name in
resnet8)
    # resnet8 bit-identical at P = 1, 2 and 4; FedAvg's bytes are the whole model.
    for np in 1 2 4; do
        run $np "$work/r$np" "${cifar[@]}" --set model=resnet8 \
            || fail "resnet8 at -np $np exited $?: $(tail -2 "$work/r$np.err")"
    done
    "$check" same "$work/r1" "$work/r2" || fail "resnet8: P=1 and P=2 differ"
    "$check" same "$work/r1" "$work/r4" || fail "resnet8: P=1 and P=4 differ"
    b=$((resnet8_params * 4))
    "$check" bytes "$work/r2" $b $b $b || fail "resnet8 bytes"
    grep -q '"status":[[:space:]]*"completed"' "$work/r4/summary.json" || fail "resnet8 summary"
    # The model file and checkpoints hold the nested spec: a run resumed
    # from round 1 at another P ends where the uninterrupted one does.
    run 3 "$work/part" "${cifar[@]}" --set model=resnet8 --set rounds=1 || fail "1 round"
    run 2 "$work/part" "${cifar[@]}" --set model=resnet8 --resume auto \
        || fail "resnet8 resume exited $?: $(tail -2 "$work/part.err")"
    "$check" same "$work/r1" "$work/part" || fail "resnet8: resumed run differs"
    # A model file exported from the checkpoint starts another run.
    "$sim" export --output "$work/resnet8.h5" --set run.dir="$work/r1" "${cifar[@]}" --set model=resnet8 \
        >"$work/export.out" 2>&1 || fail "export: $(tail -2 "$work/export.out")"
    # (Read whole: grep -q in a pipe can end inspect with SIGPIPE.)
    inspected=$("$sim" inspect "$work/resnet8.h5" 2>&1)
    grep -q "parameters *$resnet8_params" <<<"$inspected" \
        || fail "inspect of the model file: $(head -5 <<<"$inspected")"
    run 1 "$work/init" "${cifar[@]}" --set model=resnet8 --set rounds=1 \
        --set init.model="$work/resnet8.h5" || fail "init.model from a resnet8 file exited $?: $(tail -2 "$work/init.err")"
    ;;
fedbn)
    # FedBN: bit-identical at P = 1, 2 and 4, the normalisation floats out
    # of the bytes, other results than FedAvg's, exact on resume at another P.
    for np in 1 2 4; do
        run $np "$work/bn$np" "${cifar[@]}" --set model=resnet8 --set fedbn=true --set rounds=3 \
            || fail "fedbn at -np $np exited $?: $(tail -2 "$work/bn$np.err")"
    done
    "$check" same "$work/bn1" "$work/bn2" || fail "fedbn: P=1 and P=2 differ"
    "$check" same "$work/bn1" "$work/bn4" || fail "fedbn: P=1 and P=4 differ"
    b=$(((resnet8_params - resnet8_norm) * 4))
    "$check" bytes "$work/bn2" $b $b $b || fail "fedbn bytes"
    run 2 "$work/plain" "${cifar[@]}" --set model=resnet8 --set rounds=3 || fail "fedavg run"
    "$check" same "$work/bn1" "$work/plain" 2>/dev/null && fail "fedbn changed nothing"
    run 3 "$work/bn-part" "${cifar[@]}" --set model=resnet8 --set fedbn=true --set rounds=2 \
        || fail "fedbn 2 rounds"
    run 2 "$work/bn-part" "${cifar[@]}" --set model=resnet8 --set fedbn=true --set rounds=3 \
        --resume auto || fail "fedbn resume exited $?: $(tail -2 "$work/bn-part.err")"
    "$check" same "$work/bn1" "$work/bn-part" || fail "fedbn: resumed run differs"
    # SCAFFOLD and FedNova with FedBN on a small block with groupnorm: the
    # same at P = 1 and 2.
    for alg in scaffold fednova; do
        for np in 1 2; do
            run $np "$work/$alg$np" "${cifar[@]}" --set "model=$small" --set fedbn=true \
                --set algorithm=$alg || fail "$alg + fedbn at -np $np exited $?: $(tail -2 "$work/$alg$np.err")"
        done
        "$check" same "$work/${alg}1" "$work/${alg}2" || fail "$alg + fedbn: P=1 and P=2 differ"
    done
    ;;
bad-input)
    for np in 1 3; do
        test_expect_error $np 'config key `local.batch_size`: the model of config key `model` has a batchnorm layer, whose batch statistics need training batches of at least 2 samples, got 1' \
            "${cifar[@]}" --set model=resnet8 --set local.batch_size=1
    done
    test_expect_error 2 'config key `model[1]` (residual): its layers turn 3x32x32 into 4x16x16, so the shortcut needs "projection": "conv" or "conv-batchnorm"' \
        "${cifar[@]}" --set 'model=[{"type":"relu"},{"type":"residual","layers":[{"type":"conv2d","filters":4,"kernel":3,"stride":2,"padding":1}]},{"type":"flatten"},{"type":"dense","units":10}]'
    test_expect_error 3 'config key `model[0].layers[1].group`: unknown key for a `groupnorm` layer, did you mean `groups`?' \
        "${cifar[@]}" --set 'model=[{"type":"residual","layers":[{"type":"conv2d","filters":3,"kernel":3,"padding":1},{"type":"groupnorm","group":3}]},{"type":"flatten"},{"type":"dense","units":10}]'
    test_expect_error 2 'config key `fedbn`: algorithm `fedmd` does not average' \
        "${cifar[@]}" --set model=resnet8 --set fedbn=true --set algorithm=fedmd
    test_expect_error 2 'config key `fedbn`: the model of config key `model` has no batchnorm or groupnorm layer' \
        "${cifar[@]}" --set model=cnn --set fedbn=true
    ;;
*)
    fail "unknown case $case_name"
    ;;
esac
test_end
