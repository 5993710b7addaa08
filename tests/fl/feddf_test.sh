#!/usr/bin/env bash
# MPI tests of FedDF over mixed architectures (one global model per
# architecture of clients.models), run by meson test:
#   feddf_test.sh CASE MPIEXEC FEDKD_SIM CHECK_RUN
# CASE is homogeneous, mixed, resume or refused. Each case exits non-zero
# (saying why) when what it checks does not hold. "Bit-identical" is
# check_run `same`: every deterministic field of every rounds.jsonl row (the
# per-architecture scores included) and the checksum of every architecture's
# final global model.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 check=$4

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin feddf

run() { test_run 120 "$sim" "$@" --quiet; } # run NP RUN_DIR [args...]

# A synthetic task: 4 classes, 20 features; 200 public rows held out of the
# training set, 120 of them used per round. Three architectures, client c
# on entry c mod 3: `model` (804 parameters), a linear one (84) and a deeper
# one (508).
classes=4 per_round=120
dense='[{"type":"dense","units":32},{"type":"relu"},{"type":"dense","units":4}]'
linear='[{"type":"dense","units":4}]'
deep='[{"type":"dense","units":16},{"type":"relu"},{"type":"dense","units":8},{"type":"relu"},{"type":"dense","units":4}]'
params=(804 84 508)
synthetic=(--set mode=federated --set data.name=synthetic --set data.synthetic_train=1200
    --set data.synthetic_test=400 --set data.synthetic_separation=0.6 --set "model=$dense"
    --set clients.count=7 --set partition.min_size=5 --set local.batch_size=16
    --set local.lr=0.05 --set public.size=200 --set public.per_round=$per_round
    --set algorithm=feddf --set feddf.epochs=3)
mixed=(--set "clients.models=[$dense,$linear,$deep]")

case $case_name in
homogeneous)
    # Entries that are all `model` are one architecture: the plain FedDF,
    # bit for bit (logs without per-model scores, same checksum). A second
    # architecture changes the result, so the comparison can fail.
    run 2 "$work/plain" "${synthetic[@]}" --set rounds=3 --set clients.per_round=0.6 \
        || fail "plain feddf exited $?: $(tail -2 "$work/plain.err")"
    run 3 "$work/same" "${synthetic[@]}" --set "clients.models=[$dense,$dense]" --set rounds=3 \
        --set clients.per_round=0.6 || fail "feddf with equal entries exited $?: $(tail -2 "$work/same.err")"
    "$check" same "$work/plain" "$work/same" || fail "clients.models equal to model changed FedDF"
    grep -q model_accuracy "$work/same/rounds.jsonl" && fail "one architecture logged per-model scores"
    run 2 "$work/two" "${synthetic[@]}" --set "clients.models=[$dense,$linear]" --set rounds=3 \
        --set clients.per_round=0.6 || fail "feddf with two architectures exited $?: $(tail -2 "$work/two.err")"
    "$check" same "$work/plain" "$work/two" 2>/dev/null && fail "a second architecture changed nothing"
    "$check" models "$work/two" 2 || fail "two architectures: per-model scores"
    ;;
mixed)
    # Two participants a round, so every round leaves at least one of the
    # three architectures without one (it is still distilled). Bit-identical
    # at P = 1, 2 and 4; every round sends all three models to each
    # participant and receives from each its own architecture's delta and its
    # logits on the sample.
    for np in 1 2 4; do
        run $np "$work/mixed$np" "${synthetic[@]}" "${mixed[@]}" --set rounds=3 \
            --set clients.per_round=2 || fail "mixed at -np $np exited $?: $(tail -2 "$work/mixed$np.err")"
    done
    "$check" same "$work/mixed1" "$work/mixed2" || fail "mixed: P=1 and P=2 differ"
    "$check" same "$work/mixed1" "$work/mixed4" || fail "mixed: P=1 and P=4 differ"
    "$check" models "$work/mixed2" 3 || fail "mixed: per-model scores"
    logits=$((per_round * classes))
    down=$((2 * 4 * (params[0] + params[1] + params[2])))
    ups=""
    for a in 0 1 2; do
        for b in 0 1 2; do
            [ $b -lt $a ] && continue
            ups="$ups${ups:+,}$((4 * (params[a] + params[b] + 2 * logits)))"
        done
    done
    "$check" round-bytes "$work/mixed4" $down "$ups" || fail "mixed bytes"
    "$check" round-bytes "$work/mixed4" $down 1,2 2>/dev/null && fail "the byte check cannot fail"
    # One participant a round among three clients, one per architecture: the
    # other two architectures are still distilled (with feddf.epochs 0
    # nothing but the participant's architecture would move).
    one=("${synthetic[@]}" "${mixed[@]}" --set rounds=4 --set clients.count=3 --set clients.per_round=0.3)
    run 2 "$work/one" "${one[@]}" || fail "one participant exited $?: $(tail -2 "$work/one.err")"
    one_up=$((4 * (params[0] + logits))),$((4 * (params[1] + logits))),$((4 * (params[2] + logits)))
    "$check" idle-changed "$work/one" $one_up || fail "an architecture without a participant was not distilled"
    run 2 "$work/still" "${one[@]}" --set feddf.epochs=0 || fail "feddf.epochs=0 exited $?: $(tail -2 "$work/still.err")"
    "$check" idle-changed "$work/still" $one_up 2>/dev/null && fail "the idle check cannot fail"
    grep -q '"status":[[:space:]]*"completed"' "$work/mixed4/summary.json" || fail "mixed summary"
    ;;
resume)
    # Stopped after 2 rounds at -np 4, resumed at -np 2: bit-identical (every
    # architecture's model, from the checkpoint's /global and /server/state)
    # to a run at -np 3 never interrupted.
    args=("${synthetic[@]}" "${mixed[@]}" --set clients.per_round=0.6 --set checkpoint.every=2)
    run 3 "$work/ref" "${args[@]}" --set rounds=4 || fail "reference exited $?: $(tail -2 "$work/ref.err")"
    run 4 "$work/part" "${args[@]}" --set rounds=2 || fail "2 rounds exited $?: $(tail -2 "$work/part.err")"
    [ -f "$work/part/checkpoint-000002.h5" ] || fail "no checkpoint to resume from"
    run 2 "$work/part" "${args[@]}" --set rounds=4 --resume auto \
        || fail "resume at -np 2 exited $?: $(tail -2 "$work/part.err")"
    "$check" same "$work/ref" "$work/part" || fail "resumed at -np 2 differs"
    ;;
refused)
    # A global model per architecture needs a client on each: `model` that
    # no entry is, and an entry no client reaches, are refused in one line
    # naming the key, non-zero exit, no hang; so are more than 8.
    test_expect_error 2 "config key \`model\`: algorithm \`feddf\` keeps a global model of \`model\`" \
        "${synthetic[@]}" --set "clients.models=[$linear,$deep]"
    test_expect_error 1 "config key \`clients.models\`: entry 3 ([{\"type\":\"dense\",\"units\":16}" \
        "${synthetic[@]}" "${mixed[@]}" --set clients.count=2
    many="$dense"
    for units in 2 3 5 6 7 8 9 10; do many="$many,[{\"type\":\"dense\",\"units\":$units},{\"type\":\"relu\"},{\"type\":\"dense\",\"units\":4}]"; done
    test_expect_error 1 "config key \`clients.models\`: 9 architectures; algorithm \`feddf\` keeps one global model per architecture, at most 8" \
        "${synthetic[@]}" --set "clients.models=[$many]" --set clients.count=9
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
test_end
