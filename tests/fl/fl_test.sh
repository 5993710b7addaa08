#!/usr/bin/env bash
# MPI tests of the federation, run by meson test:
#   fl_test.sh CASE MPIEXEC FEDKD_SIM CHECK_RUN FASHION_MNIST_DIR
# Each case exits non-zero (saying why) when what it checks does not hold.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 check=$4 fashion=$5

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin fl

run() { test_run 120 "$sim" "$@" --quiet; } # run NP RUN_DIR [args...]

# A small synthetic task that trains in well under a second per round.
synthetic=(--set mode=federated --set data.name=synthetic --set data.synthetic_train=1200
    --set data.synthetic_test=400 --set data.synthetic_separation=0.6
    --set 'model=[{"type":"dense","units":32},{"type":"relu"},{"type":"dense","units":4}]'
    --set clients.count=7 --set partition.min_size=5 --set local.batch_size=16
    --set local.lr=0.05)
# A Fashion-MNIST subset, for the real data path.
fashion_subset=(--set mode=federated --set data.dir="$fashion" --set data.train_limit=3000
    --set data.test_limit=1000 --set clients.count=8 --set partition.min_size=5
    --set clients.per_round=0.5)

case $case_name in
determinism)
    # The same config and seed: bit-identical logs and model at P = 1, 2, 4
    # and across repeated runs, with client sampling and a skewed partition.
    # At P = 4 one rank computes at a time (run.compute_slots 1); the
    # repeated run at P = 2 has no limit.
    for np in 1 2 4; do
        slots=0
        [ $np = 4 ] && slots=1
        run $np "$work/syn$np" "${synthetic[@]}" --set rounds=4 --set algorithm=fedprox \
            --set clients.per_round=0.6 --set run.compute_slots=$slots \
            || fail "synthetic run at -np $np exited $?: $(tail -2 "$work/syn$np.err")"
    done
    run 2 "$work/syn2again" "${synthetic[@]}" --set rounds=4 --set algorithm=fedprox \
        --set clients.per_round=0.6 --set run.compute_slots=-1 || fail "repeated run exited $?"
    "$check" same "$work/syn1" "$work/syn2" || fail "P=1 and P=2 differ"
    "$check" same "$work/syn1" "$work/syn4" || fail "P=1 and P=4 differ"
    "$check" same "$work/syn2" "$work/syn2again" || fail "repeated runs at P=2 differ"
    # The round's sum goes through node-shared memory above: one node. Cut
    # into nodes of 2 ranks (2 + 2 + 1 at P = 5: the leaders then reduce
    # with MPI, one node has no other rank) and of 1 rank (no shared sum,
    # MPI alone), the bits stay the same.
    FEDKD_TEST_RANKS_PER_NODE=2 run 5 "$work/syn5nodes" "${synthetic[@]}" --set rounds=4 \
        --set algorithm=fedprox --set clients.per_round=0.6 \
        || fail "P=5 in nodes of 2 exited $?: $(tail -2 "$work/syn5nodes.err")"
    FEDKD_TEST_RANKS_PER_NODE=1 run 4 "$work/syn4mpi" "${synthetic[@]}" --set rounds=4 \
        --set algorithm=fedprox --set clients.per_round=0.6 \
        || fail "P=4 in nodes of 1 exited $?: $(tail -2 "$work/syn4mpi.err")"
    "$check" same "$work/syn1" "$work/syn5nodes" || fail "P=1 and P=5 in nodes of 2 ranks differ"
    "$check" same "$work/syn1" "$work/syn4mpi" || fail "P=1 and P=4 in nodes of 1 rank differ"
    # Shared memory that cannot be made: one warning, MPI alone, same bits.
    FEDKD_TEST_NODE_SHARE_REFUSED=1 run 3 "$work/syn3refused" "${synthetic[@]}" --set rounds=4 \
        --set algorithm=fedprox --set clients.per_round=0.6 \
        || fail "P=3 without shared memory exited $?: $(tail -2 "$work/syn3refused.err")"
    "$check" same "$work/syn1" "$work/syn3refused" || fail "P=1 and P=3 without shared memory differ"
    warned=$(grep -c 'node-shared collectives: .*the ranks use MPI alone' "$work/syn3refused.err")
    [ "$warned" = 1 ] || fail "P=3 without shared memory: $warned warning line(s), expected 1: $(cat "$work/syn3refused.err")"
    # With P > 1 the server evaluates round r while clients train round r + 1:
    # every round but the last (and checkpoint rounds) is flagged overlapped,
    # with its evaluation left out of round_seconds. P = 1 cannot overlap.
    overlapped() { awk -F, 'NR > 1 { printf "%s", $14 }' "$1/rounds.csv"; }
    [ "$(overlapped "$work/syn2")" = 1110 ] || fail "P=2: eval_overlapped per round $(overlapped "$work/syn2"), expected 1110"
    [ "$(overlapped "$work/syn1")" = 0000 ] || fail "P=1: eval_overlapped per round $(overlapped "$work/syn1"), expected 0000"
    head -1 "$work/syn2/rounds.csv" | cut -d, -f14 | grep -qx 'eval_overlapped' || fail "rounds.csv lacks the eval_overlapped column (14th)"
    # Fewer clients than client ranks: idle ranks still take part.
    for np in 1 4; do
        run $np "$work/few$np" "${synthetic[@]}" --set rounds=2 --set clients.count=2 \
            || fail "2 clients at -np $np exited $?: $(tail -2 "$work/few$np.err")"
    done
    "$check" same "$work/few1" "$work/few4" || fail "2 clients: P=1 and P=4 differ"
    # A different seed must change the result (the check can fail).
    run 2 "$work/synseed" "${synthetic[@]}" --set rounds=4 --set algorithm=fedprox \
        --set clients.per_round=0.6 --set seed=7 || fail "seed-7 run exited $?"
    "$check" same "$work/syn2" "$work/synseed" 2>/dev/null && fail "a different seed gave identical results"
    if [ -d "$fashion" ]; then
        for np in 1 4; do
            run $np "$work/fm$np" "${fashion_subset[@]}" --set rounds=2 --set model=cnn \
                || fail "fashion-mnist cnn run at -np $np exited $?: $(tail -2 "$work/fm$np.err")"
        done
        "$check" same "$work/fm1" "$work/fm4" || fail "fashion-mnist cnn: P=1 and P=4 differ"
    else
        echo "fashion-mnist not installed at $fashion: real-data part skipped"
    fi
    ;;
logs)
    # Logs parse, have one row per round, and count bytes exactly.
    run 4 "$work/logs" "${synthetic[@]}" --set rounds=3 --set clients.per_round=3 \
        || fail "run exited $?"
    "$check" logs "$work/logs" 3 || fail "log check"
    grep -q '"status":[[:space:]]*"completed"' "$work/logs/summary.json" || fail "summary status"
    # The BLAS kernel family the results depend on is on record.
    grep -Eq '"blas_core":[[:space:]]*"[A-Za-z0-9]+"' "$work/logs/summary.json" \
        || fail "summary.json lacks blas_core"
    [ -s "$work/logs.out" ] && fail "--quiet run printed on stdout: $(head -2 "$work/logs.out")"
    [ -s "$work/logs.err" ] && fail "a clean run printed on stderr: $(head -2 "$work/logs.err")"
    # Progress: rank 0 prints one line per round, other ranks nothing.
    timeout 60 "$mpiexec" --oversubscribe -np 3 "$sim" "${synthetic[@]}" --set rounds=2 \
        --set run.dir="$work/progress" >"$work/progress.out" 2>"$work/progress.err" || fail "progress run"
    [ "$(grep -c '^round ' "$work/progress.out")" = 2 ] || fail "expected 2 progress lines: $(cat "$work/progress.out")"
    # Ranks on different OpenBLAS kernels (as on nodes of mixed CPUs) are
    # told about once, by rank 0; the run goes on.
    timeout 60 "$mpiexec" --oversubscribe -np 1 -x OPENBLAS_CORETYPE=Sandybridge "$sim" \
        "${synthetic[@]}" --set rounds=1 --set run.dir="$work/mixed-blas" --quiet : \
        -np 2 -x OPENBLAS_CORETYPE=Haswell "$sim" "${synthetic[@]}" --set rounds=1 \
        --set run.dir="$work/mixed-blas" --quiet >"$work/mixed-blas.out" 2>"$work/mixed-blas.err" \
        || fail "run on mixed OpenBLAS kernels exited $?: $(tail -2 "$work/mixed-blas.err")"
    [ "$(grep -c 'different OpenBLAS kernel families (rank 0: Sandybridge)' "$work/mixed-blas.err")" = 1 ] \
        || fail "mixed OpenBLAS kernels: expected one warning: $(cat "$work/mixed-blas.err")"
    ;;
schemes)
    # Every partition scheme runs end to end and writes its partition.
    for scheme in iid dirichlet shards quantity feature-noise; do
        run 2 "$work/$scheme" "${synthetic[@]}" --set rounds=2 --set partition.scheme=$scheme \
            --set partition.classes_per_client=2 \
            || fail "$scheme exited $?: $(tail -1 "$work/$scheme.err")"
        "$check" logs "$work/$scheme" 2 || fail "$scheme logs"
        grep -q "\"scheme\":[[:space:]]*\"$scheme\"" "$work/$scheme/partition.json" \
            || fail "$scheme: partition.json does not name the scheme"
    done
    "$sim" partition "${synthetic[@]}" --set partition.scheme=shards \
        --set partition.classes_per_client=1 >"$work/part.out" 2>&1 || fail "partition command"
    [ "$(grep -cE '^ +[0-9]+ +[0-9]+' "$work/part.out")" = 7 ] || fail "partition command: expected 7 client rows: $(cat "$work/part.out")"
    ;;
bad-input)
    # Each bad input: non-zero exit on every rank, one clear message, no hang.
    expect_error() { # expect_error NP "substring" args...
        local np=$1 want=$2
        shift 2
        local dir="$work/bad$RANDOM"
        run "$np" "$dir" "$@"
        test_check_error "$*" $? "$dir.err" "$want"
    }
    expect_error 2 "partition.alpha" "${synthetic[@]}" --set partition.alpha=0
    expect_error 2 "partition.alpha" "${synthetic[@]}" --set partition.alpha=-1
    expect_error 2 "partition.classes_per_client" "${synthetic[@]}" --set partition.scheme=shards --set partition.classes_per_client=5
    expect_error 2 "clients.count" "${synthetic[@]}" --set clients.count=2000
    expect_error 2 "min_size" "${synthetic[@]}" --set partition.min_size=400
    expect_error 2 "clients.per_round" "${synthetic[@]}" --set clients.per_round=0
    expect_error 2 "clients.per_round" "${synthetic[@]}" --set clients.per_round=1.5
    expect_error 4 "unknown algorithm \`fedavgg\`" "${synthetic[@]}" --set algorithm=fedavgg
    expect_error 2 "data.dir" --set data.dir="$work/nowhere"
    # The dataset missing on one rank only: that rank says so, all exit.
    FEDKD_TEST_FAIL_DATA_ON_RANK=2 expect_error 4 "[rank 2]" "${synthetic[@]}"
    # A cut training file, which the last rank reads for all the others:
    # it says where the data ends, and every rank exits.
    if [ -d "$fashion" ]; then
        mkdir -p "$work/cut" && cp "$fashion"/*-ubyte.gz "$work/cut/" || fail "copying $fashion"
        head -c 1000000 "$fashion/train-images-idx3-ubyte.gz" >"$work/cut/train-images-idx3-ubyte.gz"
        expect_error 3 "[rank 2] $work/cut/train-images-idx3-ubyte.gz: data ends at byte offset" \
            "${fashion_subset[@]}" --set data.dir="$work/cut"
    fi
    # Diverging training (NaN) on a client rank stops the whole run.
    expect_error 3 "local.lr" "${synthetic[@]}" --set local.lr=1e30 --set local.momentum=0
    ;;
signal)
    # SIGTERM (as from a scheduler or Ctrl-C through mpirun) mid-run: a
    # clean stop with the finished rounds logged and a non-zero exit.
    dir="$work/sig"
    # mpirun kills the ranks 1 s after forwarding SIGTERM unless told to wait
    # (it then also waits that long after any rank fails: set it here only).
    export OMPI_MCA_odls_base_sigkill_timeout=5
    "$mpiexec" --oversubscribe -np 3 "$sim" "${synthetic[@]}" --set rounds=100000 \
        --set run.dir="$dir" >"$dir.out" 2>"$dir.err" &
    pid=$!
    for _ in $(seq 1 300); do
        [ -s "$dir/rounds.jsonl" ] && [ "$(wc -l <"$dir/rounds.jsonl")" -ge 3 ] && break
        sleep 0.1
    done
    kill -TERM $pid
    code=0
    wait $pid || code=$?
    [ $code != 0 ] || fail "interrupted run exited 0"
    [ -s "$dir/rounds.jsonl" ] || fail "no rounds logged before the signal"
    "$check" logs "$dir" "$(wc -l <"$dir/rounds.jsonl")" || fail "logs of the interrupted run are not consistent"
    grep -q '"status":[[:space:]]*"interrupted"' "$dir/summary.json" || fail "summary.json does not say interrupted: $(head -c 300 "$dir/summary.json")"
    grep -q 'interrupted' "$dir.err" || fail "no message about the interruption: $(cat "$dir.err")"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
test_end
