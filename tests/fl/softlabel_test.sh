#!/usr/bin/env bash
# MPI tests of the soft-label federations (FedMD, FedDF, DS-FL, FD, DML) and
# heterogeneous clients, run by meson test:
#   softlabel_test.sh CASE MPIEXEC FEDKD_SIM CHECK_RUN SOFTLABEL_CHECK
# CASE is an algorithm (fedmd, dsfl, dml, fd, feddf), one-client, mixed,
# mixed-refused, resume or bad-input. FedDF over mixed architectures is
# tests/fl/feddf_test.sh's.
# Each case exits non-zero (saying why) when what it checks does not hold.
# "Bit-identical" is check_run `same`: every deterministic field of every
# rounds.jsonl row and the final checksum, which for algorithms without a
# global model covers every client's own model.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 check=$4 softlabel_check=$5

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin softlabel

run() { test_run 120 "$sim" "$@" --quiet; } # run NP RUN_DIR [args...]

# A synthetic task: 4 classes, 20 features, a 804-parameter model; 200 public
# rows held out of the training set, 120 of them used per round.
classes=4 params=804 public=200 per_round=120
dense='[{"type":"dense","units":32},{"type":"relu"},{"type":"dense","units":4}]'
synthetic=(--set mode=federated --set data.name=synthetic --set data.synthetic_train=1200
    --set data.synthetic_test=400 --set data.synthetic_separation=0.6 --set "model=$dense"
    --set clients.count=7 --set partition.min_size=5 --set local.batch_size=16
    --set local.lr=0.05 --set public.size=$public --set public.per_round=$per_round)
# Three architectures, client c using entry c mod 3.
mixed=(--set 'clients.models=[[{"type":"dense","units":32},{"type":"relu"},{"type":"dense","units":4}],[{"type":"dense","units":4}],[{"type":"dense","units":16},{"type":"relu"},{"type":"dense","units":8},{"type":"relu"},{"type":"dense","units":4}]]')

case $case_name in
fedmd | dsfl | dml | fd | feddf)
    # One algorithm: bit-identical at P = 1, 2 and 4 with client sampling and
    # a per-round public sample; payload bytes per participant exact; the
    # server state (soft-label algorithms) is what the participants uploaded,
    # recomputed from the checkpoint's client models and the data.
    alg=$case_name
    sample_bytes=$((per_round * classes * 4))
    fd_bytes=$((classes * (classes + 1) * 4))
    for np in 1 2 4; do
        run $np "$work/$alg$np" "${synthetic[@]}" --set algorithm=$alg --set rounds=3 \
            --set clients.per_round=0.6 \
            || fail "$alg at -np $np exited $?: $(tail -2 "$work/$alg$np.err")"
    done
    "$check" same "$work/${alg}1" "$work/${alg}2" || fail "$alg: P=1 and P=2 differ"
    "$check" same "$work/${alg}1" "$work/${alg}4" || fail "$alg: P=1 and P=4 differ"
    case $alg in
    fd) down=$fd_bytes up=$fd_bytes first=0 other=$sample_bytes ;;
    feddf) down=$((params * 4)) up=$((params * 4 + sample_bytes)) first=$down other=$up ;;
    *) down=$sample_bytes up=$sample_bytes first=0 other=$fd_bytes ;;
    esac
    "$check" bytes "$work/${alg}2" $first $down $up || fail "$alg bytes"
    grep -q '"status":[[:space:]]*"completed"' "$work/${alg}2/summary.json" || fail "$alg summary"
    if [ $alg != feddf ]; then
        "$softlabel_check" "$work/${alg}4/checkpoint-000003.h5" >"$work/$alg.check" 2>&1 \
            || fail "$alg: $(cat "$work/$alg.check")"
    fi
    # The checks can fail: another seed changes the result, and the byte
    # check tells this payload from another's.
    run 2 "$work/$alg-seed" "${synthetic[@]}" --set algorithm=$alg --set rounds=3 \
        --set clients.per_round=0.6 --set seed=7 || fail "seed-7 run"
    "$check" same "$work/${alg}2" "$work/$alg-seed" 2>/dev/null && fail "another seed gave identical results"
    "$check" bytes "$work/${alg}2" $first $other $other 2>/dev/null && fail "the byte check cannot fail"
    ;;
one-client)
    # FedMD with one client: the consensus equals that client's own logits
    # (to 2^-40), after 1 and after 2 rounds.
    for rounds in 1 2; do
        run 2 "$work/one$rounds" "${synthetic[@]}" --set algorithm=fedmd --set clients.count=1 \
            --set rounds=$rounds || fail "one-client run exited $?: $(tail -2 "$work/one$rounds.err")"
        "$softlabel_check" "$work/one$rounds/checkpoint-00000$rounds.h5" >"$work/one.check" 2>&1 \
            || fail "one client, $rounds round(s): $(cat "$work/one.check")"
        grep -q '1 participant(s)' "$work/one.check" || fail "expected one participant: $(cat "$work/one.check")"
    done
    ;;
mixed)
    # Three architectures: FedMD, DS-FL, FD and DML complete, bit-identical
    # at P = 1 and 3.
    for alg in fedmd dsfl fd dml; do
        for np in 1 3; do
            run $np "$work/mixed-$alg$np" "${synthetic[@]}" "${mixed[@]}" --set algorithm=$alg \
                --set rounds=3 || fail "mixed $alg at -np $np exited $?: $(tail -2 "$work/mixed-$alg$np.err")"
        done
        "$check" same "$work/mixed-${alg}1" "$work/mixed-${alg}3" || fail "mixed $alg: P=1 and P=3 differ"
        grep -q '"status":[[:space:]]*"completed"' "$work/mixed-${alg}3/summary.json" || fail "mixed $alg summary"
    done
    # Mixed models change the outcome (the comparison can fail).
    run 3 "$work/plain-fedmd" "${synthetic[@]}" --set algorithm=fedmd --set rounds=3 || fail "plain fedmd"
    "$check" same "$work/plain-fedmd" "$work/mixed-fedmd3" 2>/dev/null && fail "mixed models changed nothing"
    "$softlabel_check" "$work/mixed-dsfl3/checkpoint-000003.h5" >"$work/mixed.check" 2>&1 \
        || fail "mixed dsfl state: $(cat "$work/mixed.check")"
    ;;
mixed-refused)
    # FedAvg and FedProx refuse mixed models with one message, from every
    # rank, naming the keys; before any collective, so no hang (SCAFFOLD and
    # FedNova: workload_test.sh bad-input; FedDF keeps a model per
    # architecture: feddf_test.sh).
    for alg in fedavg fedprox; do
        for np in 1 4; do
            test_expect_error $np "config key \`clients.models\`: algorithm \`$alg\` averages the clients' weights and needs every client on config key \`model\`" \
                "${synthetic[@]}" "${mixed[@]}" --set algorithm=$alg
        done
    done
    test_expect_error 3 "mixed models run with algorithm fedmd, feddf, dsfl, fd, dml" "${synthetic[@]}" \
        --set clients.models=mlp,cnn --set algorithm=fedavg
    # Entries equal to `model` are not mixed: FedAvg runs.
    run 3 "$work/same-models" "${synthetic[@]}" --set "clients.models=[$dense,$dense]" \
        --set algorithm=fedavg --set rounds=2 || fail "fedavg with every entry equal to model: $(tail -2 "$work/same-models.err")"
    run 3 "$work/no-models" "${synthetic[@]}" --set algorithm=fedavg --set rounds=2 || fail "fedavg"
    "$check" same "$work/same-models" "$work/no-models" || fail "clients.models equal to model changed FedAvg"
    ;;
resume)
    # FedMD with mixed models and DS-FL: stopped after 2 rounds, resumed at
    # another P, bit-identical (client models included) to a run never
    # interrupted.
    for alg in fedmd dsfl; do
        args=("${synthetic[@]}" "${mixed[@]}" --set algorithm=$alg --set clients.per_round=0.6)
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
    # The comparison sees client models: a resume that restarted them would
    # differ. Resuming with another algorithm's state is refused.
    "$check" same "$work/ref-fedmd" "$work/ref-dsfl" 2>/dev/null && fail "fedmd and dsfl gave identical results"
    run 2 "$work/part-fedmd" "${synthetic[@]}" "${mixed[@]}" --set algorithm=fedmd \
        --set clients.per_round=0.6 --set rounds=5 --set dsfl.temperature=0.5 --resume auto
    grep -q 'config key `dsfl.temperature`' "$work/part-fedmd.err" || fail "a changed key was not refused: $(cat "$work/part-fedmd.err")"
    ;;
bad-input)
    test_expect_error 2 "config key \`public.per_round\`: 500 samples per round, but the public set holds 200" \
        "${synthetic[@]}" --set algorithm=dsfl --set public.per_round=500
    test_expect_error 3 "config key \`init.model\`: algorithm \`fd\` keeps one model per client" \
        "${synthetic[@]}" --set algorithm=fd --set init.model="$work/none.h5"
    test_expect_error 2 "config key \`dsfl.temperature\`: expected a number in (0, 1]" \
        "${synthetic[@]}" --set algorithm=dsfl --set dsfl.temperature=0
    test_expect_error 2 "config key \`fedmd.digest_loss\`: expected one of \"mae\", \"kl\"" \
        "${synthetic[@]}" --set algorithm=fedmd --set fedmd.digest_loss=l1
    test_expect_error 2 "config key \`clients.models\`: expected \"\", comma-separated preset names" \
        "${synthetic[@]}" --set algorithm=fedmd --set clients.models=mlp,,cnn
    test_expect_error 3 "config key \`clients.models\` (entry 2): the last layer outputs 5 values" \
        "${synthetic[@]}" --set algorithm=fedmd --set "clients.models=[$dense,[{\"type\":\"dense\",\"units\":5}]]"
    test_expect_error 2 "config key \`feddf.patience\`" "${synthetic[@]}" --set algorithm=feddf --set feddf.patience=0
    test_expect_error 4 "config key \`public.size\`" "${synthetic[@]}" --set algorithm=fedmd --set public.size=0
    # A client whose training diverges stops every rank, told once.
    test_expect_error 3 "local.lr" "${synthetic[@]}" --set algorithm=dml --set local.lr=1e30 --set local.momentum=0
    # The KL digest runs too.
    run 2 "$work/kl" "${synthetic[@]}" --set algorithm=fedmd --set fedmd.digest_loss=kl --set rounds=2 \
        || fail "fedmd with the KL digest exited $?: $(tail -2 "$work/kl.err")"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
test_end
