#!/usr/bin/env bash
# MPI tests of the KD-consolidated start (mode kd-start), run by meson test:
#   kd_start_test.sh CASE MPIEXEC FEDKD_SIM CHECK KD_RUN FASHION_MNIST_DIR
# CHECK is tests/kd/kd_start_check; KD_RUN writes model files "made
# elsewhere". The runs use a small subset of Fashion-MNIST and are skipped
# (exit 77) when it is not installed. Each case exits non-zero, saying why,
# when what it checks does not hold.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 check=$4 kd_run=$5 fashion=$6

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
if [ ! -f "$fashion/train-images-idx3-ubyte.gz" ]; then
    echo "SKIP: Fashion-MNIST is not in $fashion"
    exit 77
fi
test_begin kd-start

run() { test_run 200 "$sim" "$@"; } # run NP RUN_DIR [args...]

# 3000 training images (600 of them the public set), 6 clients, 4 rounds.
subset=(--set data.name=fashion-mnist --set data.dir="$fashion" --set data.train_limit=3000
    --set data.test_limit=1000 --set model=mlp --set algorithm=fedavg --set clients.count=6
    --set clients.per_round=1.0 --set partition.scheme=dirichlet --set partition.alpha=0.5
    --set partition.min_size=10 --set public.size=600 --set public.source=train-holdout
    --set pretrain.epochs=2 --set kd.epochs=3 --set kd.temperature=4 --set kd.ensemble=probs
    --set rounds=4 --set target_accuracy=0.6 --set local.epochs=1 --set local.batch_size=32
    --set local.lr=0.05 --set checkpoint.every=2 --set seed=3)
kd_start=(--set mode=kd-start "${subset[@]}")

# The seconds columns of kd_start.csv are the last three.
strip_timing() { cut -d, -f1-18 "$1"; }
# rounds.csv up to bytes_up (wire bytes and timings depend on P and time).
rounds_columns() { cut -d, -f1-7 "$1"; }

case $case_name in
pipeline)
    run 3 "$work/a" "${kd_start[@]}" || fail "kd-start at -np 3 exited $?: $(tail -3 "$work/a.err")"
    "$check" run "$work/a" || fail "kd_start.json does not agree with the runs' logs"
    [ -s "$work/a.err" ] && fail "a clean run printed on stderr: $(head -3 "$work/a.err")"
    for name in random average kd; do
        grep -qE "^  $name +[0-9]" "$work/a.out" \
            || fail "the comparison table lacks the $name row: $(tail -6 "$work/a.out")"
    done
    # The distilled student starts far above the seeded initialisation (0.1).
    round0_of() { grep "^$1," "$work/a/kd_start.csv" | cut -d, -f4; }
    random0=$(round0_of random) kd0=$(round0_of kd)
    awk -v r="$random0" -v k="$kd0" 'BEGIN { exit !(k > r + 0.2) }' \
        || fail "the KD start's round-0 accuracy $kd0 is not well above the random start's $random0"
    grep -q '"origin":[[:space:]]*"trained"' "$work/a/pretrain.json" || fail "pretrain.json: not trained"

    # Again without --resume: the models are reused (same fingerprint), the
    # federations run again, the tables are the same.
    cp "$work/a/kd_start.json" "$work/first.json"
    run 3 "$work/a" "${kd_start[@]}" || fail "rerun exited $?: $(tail -3 "$work/a.err")"
    [ "$(grep -o '"reused"' "$work/a/pretrain.json" | wc -l)" = 6 ] \
        || fail "the rerun did not reuse the 6 pre-trained models: $(cat "$work/a/pretrain.json")"
    "$check" same "$work/first.json" "$work/a/kd_start.json" || fail "the rerun's tables differ"

    # Models pre-trained without the public rows held out are not reused:
    # the partition differs, so does the fingerprint. That run is FedProx:
    # its federations are run.dir/fedprox-random, -average and -kd.
    timeout 200 "$mpiexec" --oversubscribe -np 3 "$sim" --quiet --set mode=pretrain "${subset[@]}" \
        --set run.dir="$work/plain" --set pretrain.dir="$work/plain-models" >/dev/null 2>"$work/plain.err" \
        || fail "pretrain exited $?: $(tail -2 "$work/plain.err")"
    [ "$(grep -o '"trained"' "$work/plain/pretrain.json" | wc -l)" = 6 ] \
        || fail "the plain pre-training did not train 6 models"
    run 3 "$work/held" "${kd_start[@]}" --set pretrain.dir="$work/plain-models" --set rounds=1 \
        --set algorithm=fedprox || fail "kd-start on the plain models exited $?: $(tail -2 "$work/held.err")"
    for start in random average kd; do
        grep -qs '"algorithm":[[:space:]]*"fedprox"' "$work/held/fedprox-$start/summary.json" \
            || fail "no FedProx summary in $work/held/fedprox-$start: $(ls "$work/held")"
    done
    [ "$(grep -o '"retrained"' "$work/held/pretrain.json" | wc -l)" = 6 ] \
        || fail "models of a partition with the public rows were reused: $(cat "$work/held/pretrain.json")"
    ;;
resume)
    # --resume auto keeps the finished federations and continues the
    # others from their checkpoints; the result equals a run never stopped.
    run 3 "$work/ref" "${kd_start[@]}" || fail "reference run exited $?: $(tail -3 "$work/ref.err")"
    run 3 "$work/r" "${kd_start[@]}" --set rounds=2 || fail "2-round run exited $?"
    # As if the last federation had been stopped after its checkpoint of round 2.
    rm -f "$work/r/fedavg-kd/summary.json"
    run 2 "$work/r" "${kd_start[@]}" --resume auto || fail "--resume auto exited $?: $(tail -3 "$work/r.err")"
    [ "$(grep -c 'completed before' "$work/r.out")" = 0 ] \
        || fail "federations of 2 rounds were kept for a 4-round run"
    [ "$(grep -c 'resuming from' "$work/r.out")" = 3 ] || fail "the 3 federations did not resume from their checkpoints: $(grep -E 'kd-start|resum' "$work/r.out")"
    "$check" same "$work/ref/kd_start.json" "$work/r/kd_start.json" \
        || fail "the resumed run's tables differ from an uninterrupted run's"
    for dir in fedavg-random fedavg-average fedavg-kd; do
        cmp -s <(rounds_columns "$work/ref/$dir/rounds.csv") <(rounds_columns "$work/r/$dir/rounds.csv") \
            || fail "$dir/rounds.csv differs after resuming"
    done
    # A finished run resumed again: every federation is kept as it is.
    run 3 "$work/r" "${kd_start[@]}" --resume auto || fail "second --resume auto exited $?"
    [ "$(grep -c 'completed before' "$work/r.out")" = 3 ] \
        || fail "the finished federations were not kept: $(grep kd-start "$work/r.out")"
    "$check" same "$work/ref/kd_start.json" "$work/r/kd_start.json" || fail "kept tables differ"
    "$check" run "$work/r" || fail "the kept run's files do not agree"
    ;;
determinism)
    # The same tables, starts and federations at -np 2 and -np 4.
    for np in 2 4; do
        run $np "$work/p$np" "${kd_start[@]}" || fail "-np $np exited $?: $(tail -3 "$work/p$np.err")"
    done
    "$check" same "$work/p2/kd_start.json" "$work/p4/kd_start.json" || fail "kd_start.json differs"
    cmp -s <(strip_timing "$work/p2/kd_start.csv") <(strip_timing "$work/p4/kd_start.csv") \
        || fail "kd_start.csv differs: $(diff <(strip_timing "$work/p2/kd_start.csv") <(strip_timing "$work/p4/kd_start.csv") | head -4)"
    "$check" same "$work/p2/summary.json" "$work/p4/summary.json" || fail "summary.json differs"
    for dir in fedavg-random fedavg-average fedavg-kd; do
        cmp -s <(rounds_columns "$work/p2/$dir/rounds.csv") <(rounds_columns "$work/p4/$dir/rounds.csv") \
            || fail "$dir/rounds.csv differs between -np 2 and -np 4"
    done
    # Another seed gives other starts (the comparison can fail).
    run 2 "$work/seed" "${kd_start[@]}" --set seed=4 --set rounds=1 || fail "seed-4 run exited $?"
    grep -o '"start_params_checksum":[^,]*' "$work/seed/kd_start.json" >"$work/seed.sums"
    grep -o '"start_params_checksum":[^,]*' "$work/p2/kd_start.json" | cmp -s - "$work/seed.sums" \
        && fail "another seed gave the same start models"
    ;;
default-job)
    # No mode given: the built-in default runs kd-start.
    run 3 "$work/d" "${subset[@]}" --set rounds=2 || fail "default job exited $?: $(tail -3 "$work/d.err")"
    [ -f "$work/d/kd_start.json" ] || fail "the default job wrote no kd_start.json"
    grep -q '"mode":[[:space:]]*"kd-start"' "$work/d/summary.json" || fail "summary.json: mode"
    "$check" run "$work/d" || fail "the default job's files do not agree"
    ;;
bad-input)
    # Each bad input: one message naming the key, non-zero exit on every
    # rank, no hang.
    expect_error() { # NAME MESSAGE [args...]
        local name=$1 message=$2
        shift 2
        run 3 "$work/$name" "${kd_start[@]}" "$@"
        test_check_error "$name" $? "$work/$name.err" "$message"
    }
    expect_error algorithm "config key \`algorithm\`: mode kd-start compares" --set algorithm=fedmd
    expect_error public "config key \`public.size\`" --set public.size=0
    expect_error too-public "config key \`public.size\`: 3000 public rows leave none" --set public.size=3000
    expect_error temperature "config key \`kd.temperature\`: expected a number > 0, got 0" \
        --set kd.temperature=0
    expect_error weight "config key \`kd.weight\`: expected a number in [0, 1], got 1.5" \
        --set kd.weight=1.5
    expect_error resume "mode kd-start runs three federations" --resume "$work/x/checkpoint-000001.h5"
    # A model file made elsewhere with another architecture (client 1 is on
    # rank 1 at -np 3): averaging and FedAvg need the config's model.
    mkdir -p "$work/models"
    "$kd_run" write-model "$work/models/client-1.h5" 784 10 || fail "write-model failed"
    expect_error architecture "client-1.h5: holds another model than config key \`model\`" \
        --set pretrain.dir="$work/models"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac

test_end
