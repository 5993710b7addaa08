#!/usr/bin/env bash
# Checkpoint tests, run by meson test:
#   ckpt_test.sh CASE MPIEXEC FEDKD_SIM CHECK_RUN CKPT_TOOL TEST_CKPT_PARALLEL H5DUMP
# Each case exits non-zero (saying why) when what it checks does not hold.
# "Bit-identical" means check_run `same`: every deterministic field of every
# rounds.jsonl row (all but wire_bytes, which depends on -np, and the
# *_seconds timings) and the final parameters' checksum.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 check=$4 tool=$5 parallel_test=$6 h5dump=$7

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin ckpt
mounts=()
cleanup() {
    local m
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

run() { # run NP RUN_DIR [args...]; output in RUN_DIR.out / .err
    local np=$1 out=${2%%:*} dir=${2#*:}
    shift 2
    timeout 120 "$mpiexec" --oversubscribe -np "$np" "$sim" --quiet --set run.dir="$dir" "$@" \
        >"$out.out" 2>"$out.err"
}
# run() and expect_error() with RUN_DIR = "OUTPUT_NAME:RUN_DIR" keep the
# output beside OUTPUT_NAME (for run directories that cannot take files).

# expect_error NP "substring" RUN_DIR args...: a non-zero exit (no hang) with
# exactly one `fedkd-sim: error` line that contains the substring.
expect_error() {
    local np=$1 want=$2 dir=${3%%:*} target=$3
    shift 3
    run "$np" "$target" "$@"
    test_check_error "$*" $? "$dir.err" "$want"
}

# A small synthetic task: a round takes milliseconds.
synthetic=(--set mode=federated --set data.name=synthetic --set data.synthetic_train=1200
    --set data.synthetic_test=400 --set data.synthetic_separation=0.6
    --set 'model=[{"type":"dense","units":32},{"type":"relu"},{"type":"dense","units":4}]'
    --set clients.count=7 --set partition.min_size=5 --set local.batch_size=16
    --set local.lr=0.05)
# A slower one (tens of ms per round) so that a kill lands mid-run.
slow=("${synthetic[@]}" --set data.synthetic_train=4000 --set local.epochs=3
    --set 'model=[{"type":"dense","units":256},{"type":"relu"},{"type":"dense","units":4}]')

# Background runs, killed with SIGKILL: mpiexec and every rank at once, as
# when a node dies (the ranks are in their own process groups).
start_job() { # start_job NP RUN_DIR args...; sets job_pid
    local np=$1 dir=$2
    shift 2
    "$mpiexec" --oversubscribe -np "$np" "$sim" --quiet --set run.dir="$dir" "$@" \
        >"$dir.out" 2>"$dir.err" &
    job_pid=$!
}
kill_job() {
    local ranks
    ranks=$(ps -o pid= --ppid "$job_pid" 2>/dev/null | tr '\n' ' ')
    # shellcheck disable=SC2086
    kill -KILL "$job_pid" $ranks 2>/dev/null
    wait "$job_pid" 2>/dev/null
    # Ranks orphaned by the kill are gone too before the next run starts.
    local pid
    for pid in $ranks; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    done
}
wait_lines() { # wait_lines FILE N SECONDS: until FILE has N lines
    local tries=$(($3 * 50))
    for _ in $(seq 1 "$tries"); do
        [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.02
    done
    return 1
}
wait_file() { # wait_file PATH SECONDS
    local tries=$(($2 * 50))
    for _ in $(seq 1 "$tries"); do
        [ -e "$1" ] && return 0
        sleep 0.02
    done
    return 1
}
# The files of a run directory but run.lock (each run writes its host and pid there).
dir_sums() { (cd "$1" && ls | grep -vx run.lock | xargs md5sum -- | sort); }
completed() { grep -q '"status":[[:space:]]*"completed"' "$1/summary.json" 2>/dev/null; }
newest() { ls "$1" | grep -E '^checkpoint-[0-9]{6}\.h5$' | sort | tail -1; }
last_accuracy() { tail -1 "$1/rounds.jsonl" | sed 's/.*"test_accuracy":\([^,]*\),.*/\1/'; }
try_mount() { # try_mount DIR OPTIONS: a tmpfs, or 1 where this machine cannot mount
    mkdir -p "$1"
    mount -t tmpfs -o "$2" tmpfs "$1" 2>/dev/null || return 1
    mounts+=("$1")
}

case $case_name in
parallel-api)
    # Writer and reader under MPI with per-client and server state.
    for np in 1 3 4; do
        timeout 120 "$mpiexec" --oversubscribe -np $np "$parallel_test" "$work/api$np" \
            >"$work/api$np.out" 2>&1 || fail "test_ckpt_parallel at -np $np: $(tail -5 "$work/api$np.out")"
    done
    ;;
resume)
    run 3 "$work/ref" "${synthetic[@]}" --set rounds=6 --set checkpoint.every=2 \
        || fail "reference run exited $?: $(tail -2 "$work/ref.err")"
    # Stopped after 2 rounds, resumed with auto at -np 2 (a different P),
    # the checkpoints written by every rank through MPI-IO.
    FEDKD_CHECKPOINT_MPIIO=1 run 3 "$work/a" "${synthetic[@]}" --set rounds=2 \
        --set checkpoint.every=2 || fail "2-round run"
    [ -f "$work/a/checkpoint-000002.h5" ] || fail "no checkpoint after round 2: $(ls "$work/a")"
    FEDKD_CHECKPOINT_MPIIO=1 run 2 "$work/a" "${synthetic[@]}" --set rounds=6 \
        --set checkpoint.every=2 --resume auto \
        || fail "resume auto at -np 2 exited $?: $(tail -2 "$work/a.err")"
    "$check" same "$work/ref" "$work/a" || fail "resumed at -np 2 differs from the reference"
    "$check" logs "$work/a" 6 || fail "logs of the resumed run"
    completed "$work/a" || fail "resumed run's summary does not say completed"
    # An explicit path, at -np 1, checkpointing every round after the resume.
    run 4 "$work/b" "${synthetic[@]}" --set rounds=2 --set checkpoint.every=2 || fail "2-round run"
    run 1 "$work/b" "${synthetic[@]}" --set rounds=6 --set checkpoint.every=1 \
        --resume "$work/b/checkpoint-000002.h5" || fail "resume PATH at -np 1 exited $?: $(tail -2 "$work/b.err")"
    "$check" same "$work/ref" "$work/b" || fail "resumed at -np 1 differs from the reference"
    [ "$(newest "$work/b")" = checkpoint-000006.h5 ] || fail "newest checkpoint is $(newest "$work/b")"
    # auto with no checkpoint yet is a fresh start.
    run 2 "$work/c" "${synthetic[@]}" --set rounds=6 --resume auto || fail "auto without checkpoint"
    "$check" same "$work/ref" "$work/c" || fail "auto without a checkpoint differs from a fresh run"
    # A fresh run (no --resume, as a requeued job that forgot it) in a
    # directory with checkpoints of an earlier run is refused in one line
    # naming the directory, the newest round and both ways on, and changes
    # nothing; --start-over removes them (and says so), so that
    # `--resume auto` cannot mix histories.
    cp -r "$work/ref" "$work/fresh"
    sums=$(dir_sums "$work/fresh")
    expect_error 2 "run directory $work/fresh holds checkpoints of an earlier run (the newest after round 6): continue it with --resume auto, or pass --start-over" \
        "$work/fresh" "${synthetic[@]}" --set rounds=2 --set checkpoint.every=0
    [ "$(dir_sums "$work/fresh")" = "$sums" ] \
        || fail "a refused fresh run changed the run directory: $(ls "$work/fresh")"
    run 2 "$work/fresh" "${synthetic[@]}" --set rounds=2 --set checkpoint.every=0 --start-over \
        || fail "fresh run with --start-over exited $?: $(tail -2 "$work/fresh.err")"
    [ "$(ls "$work/fresh" | grep -c '\.h5$')" = 1 ] && [ -f "$work/fresh/checkpoint-000002.h5" ] \
        || fail "--start-over kept old checkpoints: $(ls "$work/fresh")"
    grep -q 'held 2 checkpoint file(s) of an earlier run' "$work/fresh.err" || fail "no warning: $(cat "$work/fresh.err")"
    expect_error 2 "--start-over applies to a fresh run" "$work/fresh" "${synthetic[@]}" \
        --start-over --resume auto
    # Resuming a finished run changes nothing.
    cp -r "$work/ref" "$work/d"
    run 4 "$work/d" "${synthetic[@]}" --set rounds=6 --resume auto || fail "resume of a finished run"
    "$check" same "$work/ref" "$work/d" || fail "resuming a finished run changed it"
    "$check" logs "$work/d" 6 || fail "logs after resuming a finished run"
    # Extending: 6 rounds then 8 equals 8 at once.
    run 3 "$work/ref8" "${synthetic[@]}" --set rounds=8 --set checkpoint.every=2 || fail "8-round run"
    cp -r "$work/ref" "$work/e"
    run 2 "$work/e" "${synthetic[@]}" --set rounds=8 --set checkpoint.every=2 --resume auto \
        || fail "extending to 8 rounds exited $?: $(tail -2 "$work/e.err")"
    "$check" same "$work/ref8" "$work/e" || fail "6 + 2 rounds differ from 8 rounds"
    # The comparison can fail: 6 rounds are not 8.
    "$check" same "$work/ref" "$work/ref8" 2>/dev/null && fail "check_run same did not tell 6 rounds from 8"
    # init.model: the exported final model, trained on with a negligible
    # learning rate, keeps its accuracy; a model of another shape is refused.
    "$sim" export --quiet --set run.dir="$work/ref" --output "$work/final.h5" >"$work/export.out" 2>&1 \
        || fail "export: $(cat "$work/export.out")"
    run 2 "$work/f" "${synthetic[@]}" --set rounds=1 --set local.lr=1e-12 \
        --set init.model="$work/final.h5" || fail "init.model run exited $?: $(tail -2 "$work/f.err")"
    [ "$(last_accuracy "$work/f")" = "$(last_accuracy "$work/ref")" ] \
        || fail "init.model: accuracy $(last_accuracy "$work/f"), the exported model had $(last_accuracy "$work/ref")"
    run 2 "$work/g" "${synthetic[@]}" --set rounds=1 || fail "seeded 1-round run"
    [ "$(last_accuracy "$work/g")" != "$(last_accuracy "$work/ref")" ] \
        || fail "init.model check cannot fail: a seeded start reaches the same accuracy"
    expect_error 3 "config key \`init.model\`" "$work/h" "${synthetic[@]}" --set rounds=1 \
        --set 'model=[{"type":"dense","units":16},{"type":"relu"},{"type":"dense","units":4}]' \
        --set init.model="$work/final.h5"
    expect_error 2 "cannot open" "$work/i" "${synthetic[@]}" --set init.model="$work/nowhere.h5"
    ;;
kill)
    run 3 "$work/ref" "${slow[@]}" --set rounds=30 --set checkpoint.every=3 \
        || fail "reference run exited $?: $(tail -2 "$work/ref.err")"
    # 1. SIGKILL mid-run (after 7 rounds are logged), resume at -np 2.
    start_job 3 "$work/k1" "${slow[@]}" --set rounds=30 --set checkpoint.every=3
    wait_lines "$work/k1/rounds.jsonl" 7 60 || fail "k1: 7 rounds never logged"
    kill_job
    completed "$work/k1" && echo "note: k1 finished before the kill"
    echo "k1 killed after $(wc -l <"$work/k1/rounds.jsonl") logged rounds; newest $(newest "$work/k1")"
    run 2 "$work/k1" "${slow[@]}" --set rounds=30 --set checkpoint.every=3 --resume auto \
        || fail "k1 resume exited $?: $(tail -2 "$work/k1.err")"
    "$check" same "$work/ref" "$work/k1" || fail "k1: killed and resumed at -np 2 differs"
    "$check" logs "$work/k1" 30 || fail "k1 logs"
    # 2. SIGKILL while a checkpoint is being written (rank 0 sleeps between
    # writing the data and renaming the file): the previous one survives.
    FEDKD_TEST_SLEEP_IN_CHECKPOINT=2 start_job 3 "$work/k2" "${slow[@]}" --set rounds=30 \
        --set checkpoint.every=3
    wait_file "$work/k2/checkpoint-000006.h5.tmp" 60 || fail "k2: the second checkpoint never started"
    sleep 0.3
    kill_job
    [ -f "$work/k2/checkpoint-000006.h5" ] && fail "k2: checkpoint 6 completed before the kill"
    [ -f "$work/k2/checkpoint-000006.h5.tmp" ] || fail "k2: no .tmp left by the kill"
    [ "$(newest "$work/k2")" = checkpoint-000003.h5 ] || fail "k2: newest is $(newest "$work/k2")"
    "$sim" inspect "$work/k2/checkpoint-000003.h5" >/dev/null 2>"$work/k2.inspect" \
        || fail "k2: checkpoint 3 is not valid: $(cat "$work/k2.inspect")"
    run 4 "$work/k2" "${slow[@]}" --set rounds=30 --set checkpoint.every=3 --resume auto \
        || fail "k2 resume exited $?: $(tail -2 "$work/k2.err")"
    "$check" same "$work/ref" "$work/k2" || fail "k2: killed in a checkpoint write and resumed at -np 4 differs"
    ls "$work/k2" | grep -q '\.tmp$' && fail "k2: a stale .tmp survived the resumed run: $(ls "$work/k2")"
    # 3. One rank killed (the job aborts), resumed, killed again whole,
    # resumed at -np 3.
    start_job 3 "$work/k3" "${slow[@]}" --set rounds=30 --set checkpoint.every=3
    wait_lines "$work/k3/rounds.jsonl" 5 60 || fail "k3: 5 rounds never logged"
    victim=$(ps -o pid= --ppid "$job_pid" | tail -1)
    [ -n "$victim" ] && kill -KILL $victim
    for _ in $(seq 1 600); do kill -0 "$job_pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$job_pid" 2>/dev/null && fail "k3: the job did not stop after a rank died"
    kill_job
    start_job 2 "$work/k3" "${slow[@]}" --set rounds=30 --set checkpoint.every=3 --resume auto
    wait_lines "$work/k3/rounds.jsonl" 16 60 || fail "k3: the resumed run never reached 16 rounds"
    kill_job
    echo "k3 killed twice; newest $(newest "$work/k3")"
    run 3 "$work/k3" "${slow[@]}" --set rounds=30 --set checkpoint.every=3 --resume auto \
        || fail "k3 final resume exited $?: $(tail -2 "$work/k3.err")"
    "$check" same "$work/ref" "$work/k3" || fail "k3: killed twice and resumed differs"
    ;;
refuse)
    run 3 "$work/base" "${synthetic[@]}" --set rounds=4 --set checkpoint.every=2 || fail "base run"
    sums=$(dir_sums "$work/base")
    expect_error 3 "config key \`seed\` is 7" "$work/base" "${synthetic[@]}" --set rounds=6 \
        --set seed=7 --resume auto
    expect_error 2 "config key \`partition.alpha\` is 0.1" "$work/base" "${synthetic[@]}" \
        --set rounds=6 --set partition.alpha=0.1 --resume auto
    expect_error 2 "config key \`model\`" "$work/base" "${synthetic[@]}" --set rounds=6 \
        --set 'model=[{"type":"dense","units":16},{"type":"relu"},{"type":"dense","units":4}]' --resume auto
    expect_error 2 "config key \`data.synthetic_train\`" "$work/base" "${synthetic[@]}" \
        --set rounds=6 --set data.synthetic_train=1300 --resume auto
    expect_error 2 "config key \`algorithm\`" "$work/base" "${synthetic[@]}" --set rounds=6 \
        --set algorithm=fedprox --resume auto
    expect_error 2 "config key \`eval.batch_size\`" "$work/base" "${synthetic[@]}" --set rounds=6 \
        --set eval.batch_size=7 --resume auto
    expect_error 2 "beyond config key \`rounds\` = 3" "$work/base" "${synthetic[@]}" --set rounds=3 \
        --resume auto
    expect_error 2 "only federated and kd-start runs" "$work/base" "${synthetic[@]}" --set mode=centralized \
        --resume "$work/base/checkpoint-000004.h5"
    expect_error 2 "nowhere.h5: cannot open" "$work/base" "${synthetic[@]}" --set rounds=6 \
        --resume "$work/nowhere.h5"
    [ "$(dir_sums "$work/base")" = "$sums" ] || fail "a refused resume changed the run directory"
    # Allowed: more rounds, another cadence, another target.
    run 2 "$work/base" "${synthetic[@]}" --set rounds=6 --set checkpoint.every=1 \
        --set checkpoint.keep=3 --set target_accuracy=0.5 --resume auto \
        || fail "an allowed resume exited $?: $(tail -2 "$work/base.err")"
    "$check" logs "$work/base" 6 || fail "logs after the allowed resume"
    ;;
bad-files)
    run 3 "$work/good" "${synthetic[@]}" --set rounds=2 --set checkpoint.every=1 || fail "base run"
    good="$work/good/checkpoint-000002.h5"
    size=$(stat -c %s "$good")
    head -c $((size / 2)) "$good" >"$work/truncated.h5"
    echo '{"not": "hdf5"}' >"$work/text.h5"
    cp "$good" "$work/newer.h5" && "$tool" set-version "$work/newer.h5" 2 || fail "ckpt_tool set-version"
    cp "$good" "$work/missing.h5" && "$tool" delete "$work/missing.h5" /partition/indices || fail "ckpt_tool delete"
    cp "$good" "$work/nomodel.h5" && "$tool" delete "$work/nomodel.h5" /global || fail "ckpt_tool delete"
    cp "$good" "$work/shape.h5" && "$tool" reshape "$work/shape.h5" /global/layers/00_dense/weight || fail "ckpt_tool reshape"
    cp "$good" "$work/clients.h5" && "$tool" reshape "$work/clients.h5" /clients/num_samples || fail "ckpt_tool reshape"
    "$sim" export --set run.dir="$work/good" --output "$work/model.h5" >/dev/null 2>&1 || fail "export"
    bad=(truncated text newer missing nomodel shape clients model)
    want=("truncated or damaged" "not an HDF5 file" "format_version 2 (written by fedkd-sim"
        "dataset \`/partition/indices\` is missing" "group \`/global\` (the model) is missing"
        "dataset \`/global/layers/00_dense/weight\` has shape [33, 20], expected [32, 20]"
        "dataset \`/clients/num_samples\` has shape [8], expected [7]"
        "not a fedkd checkpoint (attribute \`format\` is \"fedkd-model\"")
    for i in "${!bad[@]}"; do
        file="$work/${bad[$i]}.h5"
        expect_error 3 "${want[$i]}" "$work/run-${bad[$i]}" "${synthetic[@]}" --set rounds=4 --resume "$file"
        grep -qF "$file" "$work/run-${bad[$i]}.err" || fail "${bad[$i]}: the message does not name the file"
        [ "${bad[$i]}" = model ] && continue # a valid model file: inspect shows it
        "$sim" inspect "$file" >"$work/inspect-${bad[$i]}.out" 2>&1 && fail "inspect ${bad[$i]} exited 0"
        grep -qF -- "${want[$i]}" "$work/inspect-${bad[$i]}.out" \
            || fail "inspect ${bad[$i]}: $(cat "$work/inspect-${bad[$i]}.out")"
    done
    # auto picks the newest, and says what is wrong with it.
    cp -r "$work/good" "$work/auto"
    head -c $((size / 3)) "$good" >"$work/auto/checkpoint-000002.h5"
    expect_error 2 "auto/checkpoint-000002.h5: HDF5 cannot open it" "$work/auto" "${synthetic[@]}" \
        --set rounds=4 --resume auto
    # A model file where a checkpoint belongs, and the reverse.
    expect_error 2 "\`fedkd-sim export\` turns a checkpoint into a model file" "$work/run-init" \
        "${synthetic[@]}" --set init.model="$good"
    ;;
huge-sizes)
    # Extents that claim more than a file can hold: /server/state of 2^62
    # floats (the byte count wraps before malloc), /clients/state rows of
    # 2^61 clients, a weight of 2^40 rows. Refused with one line naming the
    # file and the dataset, by `inspect` and by --resume, never a crash.
    run 3 "$work/soft" "${synthetic[@]}" --set algorithm=fedmd --set public.size=100 \
        --set rounds=1 || fail "fedmd base run: $(tail -2 "$work/soft.err")"
    good="$work/soft/checkpoint-000001.h5"
    cp "$good" "$work/state.h5" && "$tool" resize "$work/state.h5" /server/state 0x4000000000000000 \
        || fail "ckpt_tool resize /server/state"
    cp "$good" "$work/clients.h5" && "$tool" resize "$work/clients.h5" /clients/state 0x2000000000000000 \
        || fail "ckpt_tool resize /clients/state"
    cp "$good" "$work/weight.h5" && "$tool" resize "$work/weight.h5" /global/layers/00_dense/weight \
        0x10000000000 || fail "ckpt_tool resize weight"
    bad=(state clients weight)
    want=("/server/state" "/clients/state" "/global/layers/00_dense/weight")
    for i in "${!bad[@]}"; do
        file="$work/${bad[$i]}.h5"
        timeout -k 5 60 "$sim" inspect "$file" >"$work/inspect-${bad[$i]}.out" 2>"$work/inspect-${bad[$i]}.err"
        code=$?
        test_check_error "inspect ${bad[$i]}" $code "$work/inspect-${bad[$i]}.err" "${want[$i]}"
        grep -qF "$file" "$work/inspect-${bad[$i]}.err" || fail "inspect ${bad[$i]}: the message does not name the file"
        expect_error 3 "${want[$i]}" "$work/run-${bad[$i]}" "${synthetic[@]}" --set algorithm=fedmd \
            --set public.size=100 --set rounds=2 --resume "$file"
        grep -qi 'signal\|Segmentation\|AddressSanitizer' "$work/run-${bad[$i]}.err" \
            && fail "${bad[$i]}: a rank crashed: $(grep -m3 -i 'signal\|Segm\|Sanitizer' "$work/run-${bad[$i]}.err")"
    done
    ;;
disk)
    # A checkpoint that cannot be created (its .tmp name is taken by a
    # directory): the run stops on every rank, the previous one stays.
    run 2 "$work/blocked" "${synthetic[@]}" --set rounds=1 || fail "blocked: first run"
    mkdir -p "$work/blocked/checkpoint-000002.h5.tmp"
    expect_error 3 "checkpoint-000002.h5.tmp: cannot create a checkpoint" "$work/blocked" \
        "${synthetic[@]}" --set rounds=4 --set checkpoint.every=1 --resume auto
    [ "$(newest "$work/blocked")" = checkpoint-000001.h5 ] || fail "blocked: newest is $(newest "$work/blocked")"
    "$sim" inspect "$work/blocked/checkpoint-000001.h5" >/dev/null 2>&1 || fail "blocked: checkpoint 1 invalid"
    grep -q '"status":[[:space:]]*"failed"' "$work/blocked/summary.json" || fail "blocked: summary not failed"
    # A write failing on one client rank only (injected): told once, by it.
    run 3 "$work/inject" "${synthetic[@]}" --set rounds=2 --set checkpoint.every=1 || fail "inject base"
    FEDKD_TEST_FAIL_CHECKPOINT_ON_RANK=2 expect_error 3 "[rank 2] checkpoint of round 3 not written" \
        "$work/inject" "${synthetic[@]}" --set rounds=4 --set checkpoint.every=1 --resume auto
    [ "$(newest "$work/inject")" = checkpoint-000002.h5 ] || fail "inject: newest is $(newest "$work/inject")"
    ls "$work/inject" | grep -q '\.tmp$' && fail "inject: a .tmp was left: $(ls "$work/inject")"
    # A full disk: a tmpfs with room for one checkpoint and a half.
    big=("${synthetic[@]}" --set 'model=[{"type":"dense","units":512},{"type":"relu"},{"type":"dense","units":4}]')
    if try_mount "$work/full" size=400k; then
        for variant in precheck write-serial write-mpiio; do
            dir="$work/full/$variant"
            run 2 "$dir" "${big[@]}" --set rounds=1 || fail "full/$variant: first run: $(tail -2 "$dir.err")"
            ckpt=$(stat -c %s "$dir/checkpoint-000001.h5")
            free=$(($(stat -f -c '%a * %S' "$work/full")))
            # Leave two thirds of a checkpoint free: HDF5's structures
            # (~20 KiB) fit, the weights do not.
            head -c $((free - ckpt * 2 / 3)) /dev/zero >"$work/full/filler-$variant" 2>/dev/null
            if [ $variant != precheck ]; then
                # Past the early free-space check, into a failing write
                # (by rank 0 alone, or by every rank through MPI-IO).
                mpiio=""
                [ $variant = write-mpiio ] && mpiio=1
                FEDKD_CHECKPOINT_MPIIO=$mpiio FEDKD_TEST_SKIP_SPACE_CHECK=1 expect_error 3 \
                    "checkpoint of round 2 not written" \
                    "$dir" "${big[@]}" --set rounds=3 --set checkpoint.every=1 --resume auto
                grep -qE 'cannot write dataset .*: file write failed.* \(the file system of .* is full' "$dir.err" \
                    || fail "full/write: unexpected message: $(grep fedkd-sim "$dir.err")"
            else
                expect_error 3 "no space left on the device" "$dir" "${big[@]}" --set rounds=3 \
                    --set checkpoint.every=1 --resume auto
            fi
            grep -q 'Segmentation\|signal' "$dir.err" && fail "full/$variant: a rank crashed: $(grep -m3 'signal\|Segm' "$dir.err")"
            [ "$(newest "$dir")" = checkpoint-000001.h5 ] || fail "full/$variant: newest is $(newest "$dir")"
            ls "$dir" | grep -q '\.tmp$' && fail "full/$variant: a .tmp was left"
            "$sim" inspect "$dir/checkpoint-000001.h5" >/dev/null 2>&1 || fail "full/$variant: checkpoint 1 invalid"
            rm -f "$work/full/filler-$variant"
            rm -rf "$dir"
        done
    else
        echo "cannot mount a tmpfs here: full-disk part skipped"
    fi
    # An unwritable run directory (a read-only file system: root ignores
    # permission bits).
    if try_mount "$work/ro" ro,size=64k; then
        expect_error 3 "ro/run: cannot create: Read-only file system" "$work/ro-run:$work/ro/run" "${synthetic[@]}" --set rounds=2
        expect_error 2 "not writable" "$work/ro-run2:$work/ro" "${synthetic[@]}" --set rounds=2 \
            --resume auto
    else
        echo "cannot mount a read-only tmpfs here: unwritable-directory part skipped"
    fi
    ;;
inspect)
    # checkpoint.every = 0: one checkpoint, at the end.
    run 3 "$work/ins" "${synthetic[@]}" --set rounds=7 --set checkpoint.every=0 || fail "run"
    [ "$(ls "$work/ins" | grep -c '\.h5$')" = 1 ] || fail "every=0 wrote $(ls "$work/ins")"
    file="$work/ins/checkpoint-000007.h5"
    "$sim" inspect "$file" >"$work/inspect.out" 2>&1 || fail "inspect exited $?: $(cat "$work/inspect.out")"
    acc=$(printf '%.6f' "$(last_accuracy "$work/ins")")
    for want in "kind            checkpoint, format_version 1, written by fedkd-sim" \
        "round           7" "algorithm fedavg, seed 42, rounds 7, data synthetic, partition dirichlet alpha=0.5" \
        "model           custom: dense 32, relu, dense 4 on 20x1x1 -> 4 classes" \
        "parameters      804 (/global" "server state    0 floats" "clients         7, samples per client" \
        "partition       dirichlet, 1200 of 1200 samples assigned (0 dropped), 4 classes" \
        "metrics         7 round(s)"; do
        grep -qF -- "$want" "$work/inspect.out" || fail "inspect lacks '$want': $(cat "$work/inspect.out")"
    done
    [ "$(grep -cE '^ +[3-7] +7 +0\.[0-9]{6}' "$work/inspect.out")" = 5 ] || fail "inspect: expected rounds 3-7 in the metrics tail"
    grep -E '^ +7 +7 ' "$work/inspect.out" | grep -qF " $acc " || fail "inspect: round 7 accuracy is not $acc"
    "$sim" export --set run.dir="$work/ins" --output "$work/model.h5" >"$work/export.out" 2>&1 \
        || fail "export: $(cat "$work/export.out")"
    "$sim" inspect "$work/model.h5" >"$work/inspect-model.out" 2>&1 || fail "inspect model: $(cat "$work/inspect-model.out")"
    for want in "kind            model file, format_version 1" "/layers/00_dense/weight [32, 20]" \
        "/layers/02_dense/bias [4]" '"round":7'; do
        grep -qF -- "$want" "$work/inspect-model.out" || fail "model inspect lacks '$want': $(cat "$work/inspect-model.out")"
    done
    # h5dump reads both without the simulator.
    if [ -x "$h5dump" ]; then
        "$h5dump" -H "$file" >"$work/h5dump.out" 2>&1 || fail "h5dump -H exited $?"
        for want in 'GROUP "global"' 'GROUP "clients"' 'DATASET "num_samples"' 'DATASET "rounds"' \
            'ATTRIBUTE "config"' 'DATASET "indices"'; do
            grep -qF "$want" "$work/h5dump.out" || fail "h5dump -H lacks $want"
        done
        "$h5dump" -a /format "$file" | grep -q '"fedkd-checkpoint"' || fail "h5dump -a /format"
        "$h5dump" -d /global/layers/00_dense/weight -H "$file" | grep -qF 'SIMPLE { ( 32, 20 ) / ( 32, 20 ) }' \
            || fail "h5dump: weight shape"
        "$h5dump" -d /metrics/rounds "$file" | grep -qF '"test_accuracy"' || fail "h5dump: metrics record"
        "$h5dump" -a /format "$work/model.h5" | grep -q '"fedkd-model"' || fail "h5dump of the model file"
    else
        fail "h5dump not found (Debian package hdf5-tools)"
    fi
    # Usage errors of the file commands.
    "$sim" inspect >"$work/u1" 2>&1 && fail "inspect without a file exited 0"
    grep -q 'inspect needs a file' "$work/u1" || fail "inspect usage: $(cat "$work/u1")"
    "$sim" export --set run.dir="$work/ins" >"$work/u2" 2>&1 && fail "export without --output exited 0"
    grep -q 'export needs --output' "$work/u2" || fail "export usage: $(cat "$work/u2")"
    "$sim" export --set run.dir="$work/empty" --output "$work/x.h5" >"$work/u3" 2>&1 && fail "export of nothing exited 0"
    grep -q 'no checkpoint in run directory' "$work/u3" || fail "export of nothing: $(cat "$work/u3")"
    "$sim" inspect "$work/none.h5" >"$work/u4" 2>&1 && fail "inspect of a missing file exited 0"
    grep -q 'none.h5: cannot open' "$work/u4" || fail "inspect of a missing file: $(cat "$work/u4")"
    "$sim" partition --resume auto >"$work/u5" 2>&1 && fail "partition --resume exited 0"
    ;;
lazy-hdf5)
    # HDF5 is loaded by the ranks that touch a file, not at start-up
    # (src/core/hdf5_lazy.c): fedkd-sim does not link it; in a FedAvg run
    # that checkpoints every round only rank 0 (the writer) loads it; with
    # per-client state (SCAFFOLD: MPI-IO from every rank) every rank does;
    # resuming loads it on rank 0 only. A library that cannot be loaded is
    # one error line, a non-zero exit on every rank, and no checkpoint
    # file or .tmp left behind.
    ldd "$sim" | grep -q 'libhdf5' && fail "fedkd-sim links HDF5: $(ldd "$sim" | grep libhdf5)"
    loaded() { # loaded ERR_FILE: the ranks that reported "HDF5 loaded", sorted
        sed -n 's/^rank \([0-9]*\): HDF5 loaded$/\1/p' "$1" | sort -n | tr '\n' ' '
    }
    export FEDKD_TEST_REPORT_HDF5=1
    run 3 "$work/fedavg" "${synthetic[@]}" --set rounds=3 --set checkpoint.every=1 \
        || fail "fedavg: exited $?: $(tail -2 "$work/fedavg.err")"
    [ "$(loaded "$work/fedavg.err")" = "0 " ] \
        || fail "fedavg: HDF5 loaded on ranks '$(loaded "$work/fedavg.err")', expected '0 ': $(grep HDF5 "$work/fedavg.err")"
    [ "$(grep -c 'HDF5 not loaded' "$work/fedavg.err")" = 2 ] || fail "fedavg: not 2 ranks without HDF5"
    "$sim" inspect "$work/fedavg/checkpoint-000003.h5" >/dev/null 2>&1 || fail "fedavg: checkpoint 3 invalid"
    run 3 "$work/fedavg" "${synthetic[@]}" --set rounds=5 --set checkpoint.every=1 --resume auto \
        || fail "fedavg resume: exited $?: $(tail -2 "$work/fedavg.err")"
    [ "$(loaded "$work/fedavg.err")" = "0 " ] \
        || fail "fedavg resume: HDF5 loaded on ranks '$(loaded "$work/fedavg.err")', expected '0 '"
    run 3 "$work/scaffold" "${synthetic[@]}" --set algorithm=scaffold --set rounds=2 \
        --set checkpoint.every=1 || fail "scaffold: exited $?: $(tail -2 "$work/scaffold.err")"
    [ "$(loaded "$work/scaffold.err")" = "0 1 2 " ] \
        || fail "scaffold: HDF5 loaded on ranks '$(loaded "$work/scaffold.err")', expected '0 1 2 '"
    unset FEDKD_TEST_REPORT_HDF5
    FEDKD_HDF5_LIBRARY=libfedkd-no-such-hdf5.so.0 expect_error 3 \
        "cannot load the HDF5 library libfedkd-no-such-hdf5.so.0 (FEDKD_HDF5_LIBRARY)" \
        "$work/missing" "${synthetic[@]}" --set rounds=3 --set checkpoint.every=1
    ls "$work/missing" | grep -q '\.h5' && fail "missing: a checkpoint file was left: $(ls "$work/missing")"
    ;;
lock)
    # Two runs into one run.dir at once: the second is refused at once (the
    # lock comes before config, data and checkpoints), naming the directory
    # and the run holding it, and the first goes on. A run killed with
    # SIGKILL leaves no stale lock behind.
    # 300 rounds took 2.5 s here, and the second run's refusal 1.5 s after
    # the first's second round: the first could end before the check that
    # it survived. It is killed below, so it may be as long as it likes.
    start_job 3 "$work/l" "${slow[@]}" --set rounds=100000 --set checkpoint.every=2
    wait_lines "$work/l/rounds.jsonl" 2 60 || fail "the first run never logged 2 rounds"
    holder=$(sed -n 's/^host \(.*\) pid \([0-9]*\)$/\2/p' "$work/l/run.lock")
    [ -n "$holder" ] && [ "$(cat "/proc/$holder/comm" 2>/dev/null)" = fedkd-sim ] \
        || fail "run.lock does not name the running rank 0: $(cat "$work/l/run.lock")"
    started=$(date +%s%N)
    expect_error 2 "run directory $work/l is in use by another run (host $(hostname) pid $holder" \
        "$work/l-second:$work/l" "${synthetic[@]}" --set rounds=300 --resume auto
    echo "second run refused in $((($(date +%s%N) - started) / 1000000)) ms"
    kill -0 "$job_pid" 2>/dev/null || fail "the first run did not survive the second's start: $(tail -3 "$work/l.err")"
    kill_job
    round=$(newest "$work/l" | sed 's/checkpoint-0*\([0-9]*\)\.h5/\1/')
    run 2 "$work/l" "${slow[@]}" --set rounds="$round" --set checkpoint.every=2 --resume auto \
        || fail "after the holder was killed, a run was refused: $(tail -2 "$work/l.err")"
    ;;
signal-checkpoint)
    # A time limit: SIGTERM, given to every rank (as srun and slurmstepd
    # do), and SLURM's earlier warning SIGUSR1, given to mpirun (as to the
    # batch shell), which forwards it: each stops the run at a round
    # boundary with a checkpoint of every finished round (checkpoint.every
    # is too large to write one otherwise), so no round is lost, and
    # --resume auto ends bit-identical to a run never interrupted.
    run 3 "$work/ref" "${slow[@]}" --set rounds=30 --set checkpoint.every=100 \
        || fail "reference run exited $?: $(tail -2 "$work/ref.err")"
    for signal in TERM USR1; do
        dir=$work/sig-$signal
        # Rounds of at least 200 ms, so that the signal lands mid-run however
        # fast the machine (the sleep is outside what the results depend on).
        export FEDKD_TEST_SLEEP_IN_ROUND_MS=200
        start_job 3 "$dir" "${slow[@]}" --set rounds=30 --set checkpoint.every=100
        unset FEDKD_TEST_SLEEP_IN_ROUND_MS
        wait_lines "$dir/rounds.jsonl" 4 60 || fail "SIG$signal: 4 rounds never logged"
        if [ $signal = TERM ]; then
            # shellcheck disable=SC2046
            kill -TERM $(ps -o pid= --ppid "$job_pid")
        else
            kill -USR1 "$job_pid"
        fi
        code=0
        wait "$job_pid" || code=$?
        [ $code = 130 ] || fail "SIG$signal: exit status $code, expected 130 (interrupted)"
        grep -q '"status":[[:space:]]*"interrupted"' "$dir/summary.json" 2>/dev/null \
            || fail "SIG$signal: summary.json does not say interrupted: $(cat "$dir.err")"
        logged=$(wc -l <"$dir/rounds.jsonl")
        [ "$(newest "$dir")" = "$(printf 'checkpoint-%06d.h5' "$logged")" ] \
            || fail "SIG$signal: $logged round(s) logged, newest checkpoint '$(newest "$dir")'"
        echo "SIG$signal after $logged logged rounds: newest checkpoint $(newest "$dir")"
        run 2 "$dir" "${slow[@]}" --set rounds=30 --set checkpoint.every=100 --resume auto \
            || fail "SIG$signal: resume exited $?: $(tail -2 "$dir.err")"
        "$check" same "$work/ref" "$dir" || fail "SIG$signal: interrupted and resumed differs"
    done
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
# Under -Db_sanitize, a report of any rank of any run is a failure, also in
# runs that were expected to fail.
reports=$(find "$work" -name '*.err' -o -name '*.out' | xargs grep -l -E \
    'ERROR: (Leak|Address)Sanitizer|runtime error:' 2>/dev/null)
for report in $reports; do
    fail "sanitizer report in $report: $(grep -m3 -E 'Sanitizer|runtime error' "$report")"
done
test_end
