#!/usr/bin/env bash
# MPI tests of the workloads of issue 14 (SCAFFOLD, FedNova, CIFAR data and
# its augmentation, learning-rate schedules), run by meson test:
#   workload_test.sh CASE MPIEXEC FEDKD_SIM CHECK_RUN TEST_CIFAR
# CASE is scaffold, fednova, resume, bad-input, cifar or schedule; TEST_CIFAR writes
# CIFAR-format files (tests/data/test_cifar.c). Each case exits non-zero
# (saying why) when what it checks does not hold. "Bit-identical" is
# check_run `same`: every deterministic field of every rounds.jsonl row and
# the final model's checksum.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 check=$4 test_cifar=$5

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin workload

run() { test_run 120 "$sim" "$@" --quiet; } # run NP RUN_DIR [args...]

# 4 classes, 20 features, an 804-parameter model, skewed labels.
params=804
dense='[{"type":"dense","units":32},{"type":"relu"},{"type":"dense","units":4}]'
synthetic=(--set mode=federated --set data.name=synthetic --set data.synthetic_train=1200
    --set data.synthetic_test=400 --set data.synthetic_separation=0.6 --set "model=$dense"
    --set clients.count=7 --set partition.min_size=5 --set partition.alpha=0.3
    --set local.batch_size=16 --set local.lr=0.05)

case $case_name in
scaffold | fednova)
    # Bit-identical at P = 1, 2 and 4 with client sampling; exact payload
    # bytes per participant (SCAFFOLD: x and c down, two deltas up;
    # FedNova: the update and its step count up).
    alg=$case_name
    for np in 1 2 4; do
        run $np "$work/$alg$np" "${synthetic[@]}" --set algorithm=$alg --set rounds=3 \
            --set clients.per_round=0.6 \
            || fail "$alg at -np $np exited $?: $(tail -2 "$work/$alg$np.err")"
    done
    "$check" same "$work/${alg}1" "$work/${alg}2" || fail "$alg: P=1 and P=2 differ"
    "$check" same "$work/${alg}1" "$work/${alg}4" || fail "$alg: P=1 and P=4 differ"
    case $alg in
    scaffold) down=$((2 * params * 4)) up=$((2 * params * 4)) ;;
    fednova) down=$((params * 4)) up=$(((params + 1) * 4)) ;;
    esac
    "$check" bytes "$work/${alg}2" $down $down $up || fail "$alg bytes"
    grep -q '"status":[[:space:]]*"completed"' "$work/${alg}2/summary.json" || fail "$alg summary"
    # The checks can fail: FedAvg on the same task gives other results.
    run 2 "$work/fedavg" "${synthetic[@]}" --set algorithm=fedavg --set rounds=3 \
        --set clients.per_round=0.6 || fail "fedavg run"
    "$check" same "$work/${alg}2" "$work/fedavg" 2>/dev/null && fail "$alg gave FedAvg's results"
    "$check" bytes "$work/fedavg" $down $down $up 2>/dev/null && fail "the byte check cannot fail"
    ;;
resume)
    # Stopped after 2 rounds, resumed at another P: bit-identical to a run
    # never interrupted. SCAFFOLD's variates (server and clients) come from
    # the checkpoint; a resume that restarted them at zero would differ.
    for alg in scaffold fednova; do
        args=("${synthetic[@]}" --set algorithm=$alg --set clients.per_round=0.6)
        run 3 "$work/ref-$alg" "${args[@]}" --set rounds=5 --set checkpoint.every=2 \
            || fail "$alg reference exited $?: $(tail -2 "$work/ref-$alg.err")"
        run 3 "$work/part-$alg" "${args[@]}" --set rounds=2 --set checkpoint.every=2 || fail "$alg 2 rounds"
        run 2 "$work/part-$alg" "${args[@]}" --set rounds=5 --set checkpoint.every=2 --resume auto \
            || fail "$alg resume at -np 2 exited $?: $(tail -2 "$work/part-$alg.err")"
        "$check" same "$work/ref-$alg" "$work/part-$alg" || fail "$alg: resumed at -np 2 differs"
        run 4 "$work/path-$alg" "${args[@]}" --set rounds=2 --set checkpoint.every=2 || fail "$alg 2 rounds"
        run 1 "$work/path-$alg" "${args[@]}" --set rounds=5 --set checkpoint.every=2 \
            --resume "$work/path-$alg/checkpoint-000002.h5" || fail "$alg resume at -np 1 exited $?"
        "$check" same "$work/ref-$alg" "$work/path-$alg" || fail "$alg: resumed at -np 1 differs"
    done
    # The checkpoint holds c (server) and every c_i (clients).
    if command -v h5dump >/dev/null; then
        h5dump -d /clients/state -c "1,8" "$work/ref-scaffold/checkpoint-000005.h5" \
            >"$work/state.txt" 2>&1 || fail "h5dump of /clients/state: $(head -3 "$work/state.txt")"
        grep -q "DATASPACE  SIMPLE { ( 7, $params )" "$work/state.txt" \
            || fail "/clients/state is not 7 x $params: $(grep DATASPACE "$work/state.txt")"
        h5dump -d /server/state -c 8 "$work/ref-scaffold/checkpoint-000005.h5" >"$work/server.txt" 2>&1
        grep -q "DATASPACE  SIMPLE { ( $params )" "$work/server.txt" \
            || fail "/server/state is not $params floats: $(grep DATASPACE "$work/server.txt")"
    fi
    # A SCAFFOLD checkpoint does not resume a FedAvg run.
    run 2 "$work/part-scaffold" "${synthetic[@]}" --set algorithm=fedavg \
        --set clients.per_round=0.6 --set rounds=5 --resume auto
    grep -q 'config key `algorithm`' "$work/part-scaffold.err" || fail "another algorithm was not refused: $(cat "$work/part-scaffold.err")"
    ;;
bad-input)
    # Mixed architectures and an optimizer whose steps are not SGD's are
    # refused on every rank before anything runs.
    mixed=(--set 'clients.models=[[{"type":"dense","units":32},{"type":"relu"},{"type":"dense","units":4}],[{"type":"dense","units":4}]]')
    for alg in scaffold fednova; do
        for np in 1 3; do
            test_expect_error $np "config key \`clients.models\`: algorithm \`$alg\` averages the clients' weights" \
                "${synthetic[@]}" "${mixed[@]}" --set algorithm=$alg
        done
        test_expect_error 2 "config key \`local.optimizer\`: algorithm \`$alg\` reads the clients' progress as plain SGD steps; expected \"sgd\", got \"adam\"" \
            "${synthetic[@]}" --set algorithm=$alg --set local.optimizer=adam
    done
    ;;
cifar)
    # A federation on CIFAR-10 files (12 records per file): every rank reads
    # only its clients' rows; bit-identical at P = 1 and 3.
    "$test_cifar" write "$work/cifar" 12 || fail "writing CIFAR files"
    conv='[{"type":"conv2d","filters":4,"kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool","kernel":4},{"type":"flatten"},{"type":"dense","units":10}]'
    cifar=(--set mode=federated --set data.name=cifar10 --set data.dir="$work/cifar"
        --set "model=$conv" --set clients.count=4 --set partition.scheme=iid
        --set partition.min_size=1 --set local.batch_size=8 --set rounds=2)
    for np in 1 3; do
        run $np "$work/c10-$np" "${cifar[@]}" || fail "cifar10 at -np $np exited $?: $(tail -2 "$work/c10-$np.err")"
    done
    "$check" same "$work/c10-1" "$work/c10-3" || fail "cifar10: P=1 and P=3 differ"
    grep -q '"status":[[:space:]]*"completed"' "$work/c10-3/summary.json" || fail "cifar10 summary"
    # Augmentation (crop with padding 4, flip): draws keyed by (seed, client,
    # round, epoch), so bit-identical at P = 1 and 3, and not the plain run.
    for np in 1 3; do
        run $np "$work/aug-$np" "${cifar[@]}" --set data.augment=true \
            || fail "augmented cifar10 at -np $np exited $?: $(tail -2 "$work/aug-$np.err")"
    done
    "$check" same "$work/aug-1" "$work/aug-3" || fail "augmented cifar10: P=1 and P=3 differ"
    "$check" same "$work/aug-1" "$work/c10-1" 2>/dev/null && fail "data.augment changed nothing"
    # A label out of range stops every rank with the file, record and offset.
    printf '\x0b' | dd of="$work/cifar/data_batch_2.bin" bs=1 seek=3073 conv=notrunc status=none
    test_expect_error 3 "data_batch_2.bin: label 11 of record 1 (byte offset 3073) is out of range: CIFAR-10 has classes 0..9" \
        "${cifar[@]}"
    test_expect_error 2 "cifar-100-binary.tar.gz" "${cifar[@]}" --set data.name=cifar100
    ;;
schedule)
    # A step schedule that never decays is the constant rate, bit for bit
    # (a fresh optimizer per round is the reset one); one that halves every
    # round is not. Cosine: bit-identical at P = 1 and 3, resumed exactly,
    # and a resume that changes `rounds` (which its rates follow) is refused.
    args=("${synthetic[@]}" --set algorithm=fedavg --set rounds=4 --set checkpoint.every=2)
    run 2 "$work/constant" "${args[@]}" || fail "constant rate exited $?"
    run 2 "$work/flat-step" "${args[@]}" --set local.lr_schedule=step --set local.lr_decay=1 \
        || fail "step schedule exited $?: $(tail -2 "$work/flat-step.err")"
    "$check" same "$work/constant" "$work/flat-step" || fail "a step schedule of decay 1 changed the run"
    run 2 "$work/halving" "${args[@]}" --set local.lr_schedule=step --set local.lr_step_rounds=1 \
        --set local.lr_decay=0.5 || fail "halving schedule exited $?"
    "$check" same "$work/constant" "$work/halving" 2>/dev/null && fail "halving the rate changed nothing"
    cosine=("${args[@]}" --set local.lr_schedule=cosine --set local.lr_warmup_rounds=1
        --set algorithm=scaffold)
    run 1 "$work/cos1" "${cosine[@]}" || fail "cosine at -np 1 exited $?: $(tail -2 "$work/cos1.err")"
    run 3 "$work/cos3" "${cosine[@]}" || fail "cosine at -np 3 exited $?"
    "$check" same "$work/cos1" "$work/cos3" || fail "cosine: P=1 and P=3 differ"
    run 3 "$work/cos-part" "${cosine[@]}" --set rounds=2 || fail "cosine 2 of 2 rounds"
    run 2 "$work/cos-part" "${cosine[@]}" --resume auto
    grep -q 'resume refused: config key `local.lr_schedule` is "cosine", whose rates follow `rounds`' \
        "$work/cos-part.err" || fail "a cosine resume with other rounds was not refused: $(cat "$work/cos-part.err")"
    run 3 "$work/cos-resume" "${cosine[@]}" || fail "cosine reference"
    rm -f "$work/cos-resume/checkpoint-000004.h5"
    run 2 "$work/cos-resume" "${cosine[@]}" --resume "$work/cos-resume/checkpoint-000002.h5" \
        || fail "cosine resume exited $?: $(tail -2 "$work/cos-resume.err")"
    "$check" same "$work/cos1" "$work/cos-resume" || fail "cosine: resumed run differs"
    # FedDF's server distillation follows its own schedule.
    feddf=("${synthetic[@]}" --set algorithm=feddf --set rounds=3 --set public.size=200)
    run 2 "$work/feddf" "${feddf[@]}" || fail "feddf exited $?"
    run 2 "$work/feddf-step" "${feddf[@]}" --set feddf.lr_schedule=step --set feddf.lr_step_rounds=1 \
        --set feddf.lr_decay=0.2 || fail "feddf with a schedule exited $?: $(tail -2 "$work/feddf-step.err")"
    "$check" same "$work/feddf" "$work/feddf-step" 2>/dev/null && fail "feddf.lr_schedule changed nothing"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
test_end
