#!/usr/bin/env bash
# MPI tests of sweeps, run by meson test:
#   sweep_test.sh CASE MPIEXEC FEDKD_SIM CHECK_SWEEP
# Each case exits non-zero (saying why) when what it checks does not hold.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 check=$4

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin sweep
sweep_command=("$sim" sweep)

# A small synthetic task that trains in a fraction of a second per point.
cat >"$work/base.json" <<'EOF'
{"mode": "federated",
 "data": {"name": "synthetic", "synthetic_train": 1200, "synthetic_test": 400,
          "synthetic_separation": 0.6},
 "model": [{"type": "dense", "units": 32}, {"type": "relu"}, {"type": "dense", "units": 4}],
 "clients": {"count": 7, "per_round": 0.6}, "partition": {"min_size": 5},
 "local": {"batch_size": 16}, "rounds": 3}
EOF

# grid NAME GROUP_SIZE GRID_OBJECT [OUTPUT]: writes $work/NAME.json
grid() {
    local out=${4:-$work/out-$1}
    printf '{"base": "base.json", "group_size": %s, "output": "%s",\n "grid": %s}\n' \
        "$2" "$out" "$3" >"$work/$1.json"
}

# sweep NP NAME [args...]: output in $work/NAME.np.out / .err
sweep() {
    local np=$1 name=$2
    shift 2
    timeout 120 "$mpiexec" --oversubscribe -np "$np" "${sweep_command[@]}" "$work/$name.json" "$@" \
        >"$work/$name.$np.out" 2>"$work/$name.$np.err"
}

case $case_name in
equivalence)
    # Two groups at -np 4 give the table of running each point on its own;
    # four groups of one and one process give it too.
    grid four 2 '{"algorithm": ["fedavg", "fedprox"], "seed": [1, 2]}'
    sweep 4 four || fail "sweep at -np 4 exited $?: $(tail -3 "$work/four.4.err")"
    [ -s "$work/four.4.err" ] && fail "a clean sweep printed on stderr: $(head -3 "$work/four.4.err")"
    [ "$(grep -c '^\[[1-4]/4\] point-000[0-3] algorithm=' "$work/four.4.out")" = 4 ] \
        || fail "expected one line per point: $(cat "$work/four.4.out")"
    point=0
    for algorithm in fedavg fedprox; do
        for seed in 1 2; do
            dir="$work/single-$point"
            timeout 60 "$mpiexec" --oversubscribe -np 2 "$sim" --quiet --config "$work/base.json" \
                --set algorithm=$algorithm --set seed=$seed --set run.dir="$dir" >/dev/null 2>"$dir.err" \
                || fail "single run of point $point exited $?: $(cat "$dir.err")"
            "$check" run "$work/out-four/results.json" $point "$dir" \
                || fail "point $point differs from its single run"
            point=$((point + 1))
        done
    done
    # The check can fail: a run with another seed is not point 0.
    "$check" run "$work/out-four/results.json" 0 "$work/single-1" 2>/dev/null \
        && fail "point 0 matched the run of point 1"
    # Four groups of one process each (a process is server and clients).
    grid ones 1 '{"algorithm": ["fedavg", "fedprox"], "seed": [1, 2]}'
    sweep 4 ones --quiet || fail "4 groups of 1 exited $?: $(tail -3 "$work/ones.4.err")"
    [ -s "$work/ones.4.out" ] && fail "--quiet printed: $(head -3 "$work/ones.4.out")"
    "$check" same "$work/out-four/results.json" "$work/out-ones/results.json" \
        || fail "4 groups of 1 and 2 groups of 2 differ"
    csv=$work/out-four/results.csv
    [ "$(wc -l <"$csv")" = 5 ] || fail "results.csv should have a header and 4 rows: $(cat "$csv")"
    head -1 "$csv" | grep -q '^point,status,algorithm,seed,.*final_accuracy,.*params_checksum,.*run_dir,message$' \
        || fail "results.csv header: $(head -1 "$csv")"
    sed -n 4p "$csv" | grep -q '^2,completed,fedprox,1,' || fail "row 2 of results.csv: $(sed -n 4p "$csv")"
    grep -q '"fingerprint"' "$work/out-four/sweep.json" || fail "sweep.json has no fingerprint"
    ;;
restart)
    # A restarted sweep skips completed points (their files stay untouched),
    # turns a completed run without a row into a row, and reruns the rest.
    grid six 2 '{"seed": [1, 2, 3], "algorithm": ["fedavg", "fedprox"]}'
    sweep 4 six --quiet || fail "first sweep exited $?: $(tail -3 "$work/six.4.err")"
    out=$work/out-six
    cp "$out/results.json" "$work/first-results.json"
    rm "$out/point-0002/row.json"
    rm -r "$out/point-0004"
    for p in 0 1 2 3 5; do stat -c %y "$out/point-000$p/summary.json" >"$work/mtime-$p"; done
    sleep 0.05
    sweep 2 six || fail "restart exited $?: $(tail -3 "$work/six.2.err")"
    grep -q 'sweep: 6 points, 1 to run' "$work/six.2.out" || fail "restart did not plan 1 point: $(cat "$work/six.2.out")"
    grep -q 'point-0004' "$work/six.2.out" || fail "point 4 was not rerun"
    for p in 0 1 2 3 5; do
        [ "$(stat -c %y "$out/point-000$p/summary.json")" = "$(cat "$work/mtime-$p")" ] \
            || fail "point $p ran again"
    done
    [ -f "$out/point-0002/row.json" ] || fail "point 2's row was not rebuilt from its summary"
    "$check" same "$work/first-results.json" "$out/results.json" || fail "restarted table differs"
    sweep 4 six || fail "third run exited $?"
    grep -q 'sweep: 6 points, 0 to run' "$work/six.4.out" || fail "a finished sweep ran again: $(cat "$work/six.4.out")"

    # A point that fails while running: a failed row with its message, the
    # other points go on, exit 1 saying so; a restart retries only it.
    printf '{"base": {"mode": "federated", "data": {"name": "synthetic", "synthetic_train": 600, "synthetic_test": 200}, "model": [{"type": "dense", "units": 4}], "clients": {"count": 4}, "partition": {"scheme": "shards", "min_size": 1}, "rounds": 2},\n "group_size": 2, "output": "%s", "grid": {"partition.classes_per_client": [2, 5, 1]}}\n' \
        "$work/out-fails" >"$work/fails.json"
    sweep 2 fails
    code=$?
    [ $code = 1 ] || fail "a sweep with a failed point exited $code"
    grep -q 'error: sweep: 1 of 3 points failed' "$work/fails.2.err" || fail "no failure summary: $(cat "$work/fails.2.err")"
    [ "$(grep -c 'fedkd-sim: error' "$work/fails.2.err")" = 1 ] || fail "expected one error line: $(cat "$work/fails.2.err")"
    "$check" count "$work/out-fails/results.json" 2 1 || fail "expected 2 completed and 1 failed"
    grep -q '^1,failed,5,.*classes_per_client' "$work/out-fails/results.csv" \
        || fail "the failed row lacks its message: $(cat "$work/out-fails/results.csv")"
    sweep 2 fails
    grep -q '3 points, 1 to run' "$work/fails.2.out" || fail "the restart did not retry only the failed point: $(cat "$work/fails.2.out")"
    # A client rank that fails (training diverges) while the server and the
    # other client ranks are fine: the group agrees, the row names the rank.
    grid diverge 4 '{"local.lr": [0.05, 1e30]}'
    sweep 4 diverge --set local.momentum=0
    code=$?
    [ $code = 1 ] || fail "a sweep with a diverging client exited $code: $(tail -3 "$work/diverge.4.err")"
    grep -q '^1,failed,1e+30,.*\[group rank [1-3]\] round 1: .*local.lr' "$work/out-diverge/results.csv" \
        || fail "the diverging point's row: $(tail -1 "$work/out-diverge/results.csv")"
    "$check" count "$work/out-diverge/results.json" 1 1 || fail "expected 1 completed and 1 failed"
    ;;
interrupt)
    # SIGTERM mid-sweep (a Ctrl-C, a scheduler's time limit): finished points
    # stay, the sweep says how to continue and exits 130; the restart runs
    # only the rest.
    grid long 2 '{"seed": [1, 2, 3, 4]}'
    sed -i 's/"rounds": 3/"rounds": 250/' "$work/base.json"
    # Every rank gets the signal, as from SLURM at a time limit. (Signalling
    # mpiexec alone is not reliable: Open MPI 4.1 may tear the job down
    # before the ranks hear of it.)
    "$mpiexec" --oversubscribe -np 4 "${sweep_command[@]}" "$work/long.json" --quiet \
        >"$work/long.out" 2>"$work/long.err" &
    pid=$!
    for _ in $(seq 1 600); do
        compgen -G "$work/out-long/point-*/row.json" >/dev/null && break
        sleep 0.05
    done
    ranks=$(pgrep -P $pid)
    [ -n "$ranks" ] || fail "no rank processes under mpiexec $pid"
    # shellcheck disable=SC2086
    kill -TERM $ranks
    code=0
    wait $pid || code=$?
    [ $code = 130 ] || fail "interrupted sweep exited $code, expected 130"
    grep -q 'sweep interrupted: [0-3] of 4 points completed' "$work/long.err" \
        || fail "no message about the interruption: $(cat "$work/long.err")"
    [ "$(grep -c 'fedkd-sim: error' "$work/long.err")" = 1 ] || fail "expected one message: $(cat "$work/long.err")"
    done_before=0
    for row in "$work"/out-long/point-*/row.json; do
        [ -f "$row" ] || continue
        done_before=$((done_before + 1))
        stat -c %y "$(dirname "$row")/summary.json" >"$row.mtime"
    done
    [ "$done_before" -ge 1 ] && [ "$done_before" -lt 4 ] || fail "$done_before points finished before the signal"
    sleep 0.05
    sweep 4 long || fail "the restart exited $?: $(tail -3 "$work/long.4.err")"
    grep -q "4 points, $((4 - done_before)) to run" "$work/long.4.out" || fail "restart plan: $(head -1 "$work/long.4.out")"
    for mtime in "$work"/out-long/point-*/row.json.mtime; do
        [ "$(stat -c %y "$(dirname "$mtime")/summary.json")" = "$(cat "$mtime")" ] \
            || fail "$(dirname "$mtime") ran again after the restart"
    done
    "$check" count "$work/out-long/results.json" 4 0 || fail "restart did not finish the sweep"
    ;;
kd-study)
    # A sweep of kd-study points: every method's figures become columns of
    # both tables, equal to each point's own kd_summary.json; a point run
    # alone gives the same figures; a restart rebuilds a lost row from
    # summary.json; bench/study_table.py turns the table into the study's.
    cat >"$work/kd-base.json" <<'EOF2'
{"mode": "kd-study",
 "data": {"name": "synthetic", "synthetic_train": 1200, "synthetic_test": 400,
          "synthetic_separation": 0.6},
 "model": [{"type": "dense", "units": 32}, {"type": "relu"}, {"type": "dense", "units": 4}],
 "clients": {"count": 4}, "partition": {"min_size": 5, "alpha": 0.5},
 "local": {"batch_size": 16, "lr": 0.05}, "pretrain": {"epochs": 1},
 "kd": {"methods": "vanilla,tuned,dml", "pairs": "ring", "epochs": 1,
        "temperature_grid": "1,2", "weight_grid": "0.25,0.5", "validation_fraction": 0.2}}
EOF2
    printf '{"base": "kd-base.json", "group_size": 2, "output": "%s",\n "grid": %s}\n' \
        "$work/out-kd" '{"partition.scheme": ["iid", "dirichlet"], "kd.temperature": [1, 4], "kd.weight": [0.25, 0.5]}' \
        >"$work/kd.json"
    out=$work/out-kd
    sweep 4 kd || fail "kd-study sweep exited $?: $(tail -3 "$work/kd.4.err")"
    "$check" count "$out/results.json" 8 0 || fail "expected 8 completed kd-study points"
    # The progress line of a kd-study point gives each method's mean gain.
    line=$(grep -m1 'point-0000 ' "$work/kd.4.out" "$work/kd.4.err" | cut -d: -f2-)
    case $line in
    *"vanilla gain "[+-]0.*", tuned gain "[+-]0.*", dml gain "[+-]0.*) ;;
    *) fail "progress line of point 0 lacks the methods' gains: $line" ;;
    esac
    # A point whose every run diverges completes; its line counts them.
    printf '{"base": "kd-base.json", "group_size": 2, "output": "%s",\n "grid": %s}\n' \
        "$work/out-kd-nan" '{"local.lr": [1e30], "pretrain.epochs": [0]}' >"$work/kd-nan.json"
    sweep 2 kd-nan || fail "a kd-study sweep with diverging runs exited $?: $(tail -3 "$work/kd-nan.2.err")"
    grep -q 'point-0000 .*: vanilla (4 diverged), tuned (4 diverged), dml (4 diverged)' \
        "$work/kd-nan.2.out" "$work/kd-nan.2.err" \
        || fail "progress line of a diverged point: $(grep 'point-0000 ' "$work/kd-nan.2.out" "$work/kd-nan.2.err")"
    "$check" kd "$out/results.json" "$out/results.csv" || fail "per-method columns differ from kd_summary.json"
    header=$(head -1 "$out/results.csv")
    for column in kd.vanilla.gain_mean kd.vanilla.gain_std kd.vanilla.before_mean kd.vanilla.after_mean \
        kd.tuned.temperature kd.tuned.weight kd.tuned.choice_share kd.dml.gain_mean; do
        case ",$header," in *",$column,"*) ;; *) fail "results.csv has no column $column: $header" ;; esac
    done
    # The check can fail: one changed cell of a copy of the table.
    awk -F, -v OFS=, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "kd.vanilla.gain_mean") c = i }
        NR == 2 { $c = $c + 0.001 } { print }' "$out/results.csv" >"$work/kd-altered.csv"
    "$check" kd "$out/results.json" "$work/kd-altered.csv" 2>/dev/null \
        && fail "check_sweep kd accepted an altered gain"
    # Point 5 (dirichlet, T = 1, weight = 0.5) on its own at -np 2.
    timeout 60 "$mpiexec" --oversubscribe -np 2 "$sim" --quiet --config "$work/kd-base.json" \
        --set partition.scheme=dirichlet --set kd.temperature=1 --set kd.weight=0.5 \
        --set run.dir="$work/kd-single" >/dev/null 2>"$work/kd-single.err" \
        || fail "single kd-study run exited $?: $(cat "$work/kd-single.err")"
    cmp -s "$out/point-0005/kd_summary.csv" "$work/kd-single/kd_summary.csv" \
        || fail "point 5's kd_summary.csv differs from its run alone"
    # A lost row comes back from the point's summary.json; nothing reruns.
    rm "$out/point-0002/row.json"
    cp "$out/results.json" "$work/kd-first.json"
    sweep 2 kd || fail "kd-study restart exited $?: $(tail -3 "$work/kd.2.err")"
    grep -q 'sweep: 8 points, 0 to run' "$work/kd.2.out" || fail "restart plan: $(head -1 "$work/kd.2.out")"
    "$check" same "$work/kd-first.json" "$out/results.json" || fail "the rebuilt table differs"

    table=$(dirname "$0")/../../bench/study_table.py
    if [ ! -x /usr/bin/python3 ]; then
        echo "note: /usr/bin/python3 is missing; bench/study_table.py not checked" >&2
    else
        # A table whose answer is known (tests/sweep/study_table_fixture.json).
        mkdir -p "$work/fixture"
        cp "$(dirname "$0")/study_table_fixture.json" "$work/fixture/results.json"
        /usr/bin/python3 "$table" "$work/fixture" >"$work/fixture.md" 2>"$work/fixture.err" \
            || fail "study_table.py on the fixture exited $?: $(cat "$work/fixture.err")"
        for want in '| iid | vanilla | 4 | 0.25 | +0.0300 | 0.0100 | 10 | +0.0200 | +50% | 3 |' \
            '| iid | ensemble | 2 | 0.25 | +0.0280 | 0.0100 | 10 | +0.0250 | +12% | 2 |' \
            '| shards(2) | vanilla | 1 | 0.5 | +0.0200 | 0.0103 | 20 | +0.0200 | +0% | 1 |' \
            '| iid | ensemble | +0.0250 | vanilla (4, 0.25) | +0.0300 | +20% | +0.0270 | (2, 0.25) 80% | +8% |' \
            '| shards(2) | vanilla | +0.0200 | vanilla (1, 0.5) | +0.0200 | +0% | - | - | - |' \
            '| non-IID average | | | | | +0% | | | - |'; do
            grep -qF -- "$want" "$work/fixture.md" || fail "study table lacks: $want"
        done
        [ "$(grep -c '^| iid |' "$work/fixture.md")" = 3 ] || fail "study table: expected 3 iid rows: $(cat "$work/fixture.md")"
        # Two sweeps pool their rows. The second one's iid vanilla cell (8,
        # 0.25) has a higher mean over its completed runs, but one run
        # diverged: that cell has no mean and is not the best.
        mkdir -p "$work/fixture-more"
        cat >"$work/fixture-more/results.json" <<'EOF2'
{"keys": ["partition.scheme", "kd.methods", "kd.temperature", "kd.weight", "seed"],
 "rows": [{"point": 0, "status": "completed", "partition.scheme": "iid", "kd.methods": "vanilla",
           "kd.temperature": 8, "kd.weight": 0.25, "seed": 1, "scheme": "iid",
           "kd.vanilla.runs": 9, "kd.vanilla.diverged": 1, "kd.vanilla.temperature": 8,
           "kd.vanilla.weight": 0.25, "kd.vanilla.gain_mean": 0.05, "kd.vanilla.gain_std": 0.01}]}
EOF2
        /usr/bin/python3 "$table" "$work/fixture" "$work/fixture-more" >"$work/pooled.md" 2>"$work/pooled.err" \
            || fail "study_table.py on two sweeps exited $?: $(cat "$work/pooled.err")"
        want='| iid | vanilla | 4 | 0.25 | +0.0300 | 0.0100 | 10 | +0.0200 | +50% | 4 (1 diverged) |'
        grep -qF -- "$want" "$work/pooled.md" || fail "pooled table lacks: $want: $(grep '| iid | vanilla' "$work/pooled.md")"
        # The sweep's own table: one row per scheme and method that has a
        # (T, weight), dml's one cell, and the tuned-over-untuned lines.
        /usr/bin/python3 "$table" "$out" >"$work/kd.md" 2>"$work/kd-table.err" \
            || fail "study_table.py exited $?: $(cat "$work/kd-table.err")"
        for scheme in 'iid' 'dirichlet(0.5)'; do
            grep -qF "| $scheme | vanilla | " "$work/kd.md" || fail "no vanilla row for $scheme: $(cat "$work/kd.md")"
            grep -qF "| $scheme | dml | - | - | " "$work/kd.md" || fail "no dml row for $scheme"
            [ "$(grep -cF "| $scheme | " "$work/kd.md")" = 3 ] || fail "expected 3 rows for $scheme: $(cat "$work/kd.md")"
        done
        grep -qE '^\| dirichlet\(0\.5\) \| [a-z-]+ \| [-+]0\.[0-9]{4} \| .* \| \(([0-9.]+), ([0-9.]+)\) [0-9]+% \|' \
            "$work/kd.md" || fail "no validation-tuned choice for dirichlet(0.5): $(cat "$work/kd.md")"
        /usr/bin/python3 "$table" "$work" >/dev/null 2>&1 && fail "study_table.py accepted a directory without results.json"
    fi
    ;;
bad-input)
    # Each bad input: a non-zero exit on EVERY rank (each records its own),
    # one clear message, no hang, nothing run.
    expect_error() { # expect_error NP GRID_NAME "substring"
        local np=$1 name=$2 want=$3 dir="$work/codes-$2"
        mkdir -p "$dir"
        timeout 60 "$mpiexec" --oversubscribe -np "$np" sh -c \
            'dir=$1; shift; "$@"; echo $? >"$dir/rank-$OMPI_COMM_WORLD_RANK"' \
            sh "$dir" "${sweep_command[@]}" "$work/$name.json" >"$work/$name.out" 2>"$work/$name.err"
        local code=$?
        [ $code = 124 ] && { fail "[$name] hung"; return; }
        local r
        for r in $(seq 0 $((np - 1))); do
            [ "$(cat "$dir/rank-$r" 2>/dev/null)" = 1 ] || fail "[$name] rank $r exited $(cat "$dir/rank-$r" 2>/dev/null)"
        done
        [ "$(grep -c 'fedkd-sim: error' "$work/$name.err")" = 1 ] \
            || fail "[$name] expected one error line: $(cat "$work/$name.err")"
        grep -qF -- "$want" "$work/$name.err" || fail "[$name] message lacks '$want': $(cat "$work/$name.err")"
        compgen -G "$work/out-$name/point-*/summary.json" >/dev/null && fail "[$name] ran a point"
    }
    grid typo 2 '{"kd.temprature": [1, 2]}'
    expect_error 4 typo "did you mean \`kd.temperature\`"
    grid empty 2 '{"seed": [1], "kd.weight": []}'
    expect_error 2 empty "grid key \`kd.weight\`: the list of values is empty"
    grid indivisible 3 '{"seed": [1, 2]}'
    expect_error 4 indivisible "\`group_size\` 3 does not divide the 4 MPI process(es)"
    grid idle 4 '{"clients.count": [2, 8]}'
    expect_error 4 idle "leaves client ranks without clients"
    echo '{"base": "base.json", "grid": {"seed": [1,]}}' >"$work/malformed.json"
    expect_error 1 malformed "malformed.json:1:"
    # Restarting into an output directory that holds another grid's results.
    grid first 1 '{"seed": [1, 2]}' "$work/shared-out"
    sweep 1 first --quiet || fail "first sweep exited $?"
    grid second 1 '{"seed": [1, 3]}' "$work/shared-out"
    expect_error 2 second "$work/shared-out/sweep.json: the output directory holds a sweep of a different grid"
    mkdir -p "$work/copied-out"
    cp "$work/shared-out/results.json" "$work/copied-out/"
    grid copied 1 '{"seed": [1, 2]}' "$work/copied-out"
    expect_error 1 copied "$work/copied-out/results.json: results of a different grid"
    mkdir -p "$work/csv-out"
    cp "$work/shared-out/results.csv" "$work/csv-out/"
    grid csv 1 '{"seed": [1, 2]}' "$work/csv-out"
    expect_error 1 csv "$work/csv-out/results.csv exists but"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
test_end
