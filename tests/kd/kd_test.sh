#!/usr/bin/env bash
# MPI tests of the kd-study, run by meson test:
#   kd_test.sh CASE MPIEXEC FEDKD_SIM KD_RUN
# KD_RUN is tests/kd/kd_run, which writes and breaks model files and checks
# JSON. Each case exits non-zero, saying why, when what it checks fails.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 tool=$4

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin kd

run() { test_run 200 "$sim" "$@" --quiet; } # run NP RUN_DIR [args...]

# A small synthetic task: 5 clients, skewed labels, every method.
study=(--set mode=kd-study --set data.name=synthetic --set data.synthetic_train=1000
    --set data.synthetic_test=300 --set data.synthetic_features=8 --set data.synthetic_classes=4
    --set data.synthetic_separation=0.8
    --set 'model=[{"type":"dense","units":16},{"type":"relu"},{"type":"dense","units":4}]'
    --set clients.count=5 --set partition.scheme=dirichlet --set partition.alpha=0.5
    --set partition.min_size=10 --set local.batch_size=16 --set local.lr=0.05
    --set pretrain.epochs=3 --set kd.epochs=1 --set kd.temperature_grid=1,4,8
    --set kd.weight_grid=0.25,0.5,0.9)

# kd_results.csv without its timing column (14).
strip_timing() { cut -d, -f1-13,15- "$1"; }

case $case_name in
diverge)
    # A run whose training diverges is a result, not a failed study. Client
    # 2's model (made elsewhere) predicts NaN: with ring pairs, vanilla KD
    # of student 1 (teacher 2) and of student 2 diverge; the other runs
    # complete and equal those of a study without the poisoned model.
    ring=(--set kd.methods=vanilla,ensemble --set kd.pairs=ring)
    run 3 "$work/clean" "${study[@]}" "${ring[@]}" --set pretrain.dir="$work/clean-models" \
        || fail "clean study exited $?: $(tail -3 "$work/clean.err")"
    mkdir -p "$work/models"
    cp "$work/clean-models"/*.h5 "$work/models/"
    "$tool" write-model "$work/models/client-2.h5" 8 4 nan || fail "write-model nan failed"
    run 3 "$work/nan" "${study[@]}" "${ring[@]}" --set pretrain.dir="$work/models" \
        || fail "a study with diverging runs exited $?: $(tail -3 "$work/nan.err")"
    # Columns: method(3), student(4), after(9), gain(10), run_diverged(16).
    diverged=$(awk -F, 'NR > 1 && $16 == 1 { print $3 ":" $4 ":" $9 ":" $10 }' "$work/nan/kd_results.csv" | sort | tr '\n' ' ')
    [ "$diverged" = "ensemble:0:: ensemble:1:: ensemble:2:: ensemble:3:: ensemble:4:: vanilla:1:: vanilla:2:: " ] \
        || fail "diverged runs (method:student:after:gain): $diverged"
    for student in 0 3 4; do
        cmp -s <(grep "^[0-9]*,[^,]*,vanilla,$student," "$work/clean/kd_results.csv" | cut -d, -f1-11) \
            <(grep "^[0-9]*,[^,]*,vanilla,$student," "$work/nan/kd_results.csv" | cut -d, -f1-11) \
            || fail "vanilla KD of student $student changed beside the diverging runs"
    done
    # kd_summary.csv: ...,runs(4),...,gain_mean(9),gain_std(10),diverged(11),teacher_share(12).
    grep -q ',vanilla,3,1,0.5,.*,2,$' "$work/nan/kd_summary.csv" \
        || fail "vanilla: expected 3 runs and 2 diverged: $(grep ',vanilla,' "$work/nan/kd_summary.csv")"
    grep -q ',ensemble,0,1,0.5,,,,,5,$' "$work/nan/kd_summary.csv" \
        || fail "ensemble: expected 0 runs, no figures, 5 diverged: $(grep ',ensemble,' "$work/nan/kd_summary.csv")"
    "$tool" check-json "$work/nan/summary.json" || fail "summary.json does not parse"
    grep -q '"diverged":[[:space:]]*7' "$work/nan/summary.json" || fail "summary.json: expected 7 diverged runs"
    ;;
determinism)
    # The same tables at P = 1, 3 and 4 (client placement differs), and
    # from reused models.
    for np in 1 3 4; do
        run $np "$work/p$np" "${study[@]}" || fail "-np $np exited $?: $(tail -2 "$work/p$np.err")"
    done
    for np in 3 4; do
        cmp -s <(strip_timing "$work/p1/kd_results.csv") <(strip_timing "$work/p$np/kd_results.csv") \
            || fail "kd_results.csv differs between -np 1 and -np $np: $(diff <(strip_timing "$work/p1/kd_results.csv") <(strip_timing "$work/p$np/kd_results.csv") | head -4)"
        cmp -s "$work/p1/kd_summary.csv" "$work/p$np/kd_summary.csv" \
            || fail "kd_summary.csv differs between -np 1 and -np $np"
    done
    # 5 students x 4 teachers x 4 pairing methods + 5 ensemble runs, plus the header.
    [ "$(wc -l <"$work/p1/kd_results.csv")" = $((1 + 5 * 4 * 4 + 5)) ] \
        || fail "expected 86 lines in kd_results.csv, got $(wc -l <"$work/p1/kd_results.csv")"
    grep -q '"origin":[[:space:]]*"trained"' "$work/p3/pretrain.json" || fail "pretrain.json origin"
    for file in kd_results.json kd_summary.json pretrain.json; do
        "$tool" check-json "$work/p3/$file" || fail "$file is not valid JSON"
    done
    ls "$work/p3/pretrained/"client-{0,1,2,3,4}.h5 >/dev/null || fail "model files missing"
    [ -s "$work/p3.err" ] && fail "a clean run printed on stderr: $(head -2 "$work/p3.err")"
    # Again at P = 3: models reused, same tables.
    run 3 "$work/p3" "${study[@]}" || fail "rerun exited $?"
    [ "$(grep -o '"reused"' "$work/p3/pretrain.json" | wc -l)" = 5 ] \
        || fail "rerun did not reuse the 5 models: $(cat "$work/p3/pretrain.json")"
    cmp -s <(strip_timing "$work/p1/kd_results.csv") <(strip_timing "$work/p3/kd_results.csv") \
        || fail "the run from reused models differs"
    # A different seed changes the tables (the comparison can fail).
    run 3 "$work/seed" "${study[@]}" --set seed=5 || fail "seed-5 run exited $?"
    cmp -s <(strip_timing "$work/p1/kd_results.csv") <(strip_timing "$work/seed/kd_results.csv") \
        && fail "a different seed gave identical tables"
    # Other pairings: row counts.
    run 2 "$work/rest" "${study[@]}" --set kd.pairs=rest --set kd.peers=3 \
        --set kd.students=1,3 || fail "rest pairing exited $?: $(tail -1 "$work/rest.err")"
    [ "$(wc -l <"$work/rest/kd_results.csv")" = $((1 + 2 * 5)) ] \
        || fail "rest pairing: expected 11 lines, got $(wc -l <"$work/rest/kd_results.csv")"
    grep -q '^42,dirichlet(0.5),dml,1,0;2,' "$work/rest/kd_results.csv" \
        || fail "rest pairing: DML of student 1 should have peers 0;2: $(grep ',dml,' "$work/rest/kd_results.csv")"
    grep -q '^42,dirichlet(0.5),ensemble,3,0;1;2;4,' "$work/rest/kd_results.csv" \
        || fail "ensemble of student 3 should have teachers 0;1;2;4"
    ;;
bad-input)
    # Each bad input: non-zero exit on every rank, the message once, no hang.
    expect_error() { # NAME MESSAGE [args...]
        local name=$1 message=$2
        shift 2
        run 3 "$work/$name" "${study[@]}" "$@"
        test_check_error "$name" $? "$work/$name.err" "$message"
    }
    expect_error method "config key \`kd.methods\`: unknown method \`fancy\`; expected vanilla, ensemble, dml, data-partitioning, class-coverage, tuned, tuned-ensemble, tuned-data-partitioning or tuned-class-coverage" \
        --set kd.methods=vanilla,fancy
    expect_error temperature "config key \`kd.temperature\`: expected a number > 0, got 0" \
        --set kd.temperature=0
    expect_error weight "config key \`kd.weight\`: expected a number in [0, 1], got 1.5" \
        --set kd.weight=1.5
    expect_error t-grid "config key \`kd.temperature_grid\`: expected numbers > 0 separated by commas, got \"1,-2\"" \
        --set kd.temperature_grid=1,-2
    expect_error a-grid "config key \`kd.weight_grid\`: expected numbers in [0, 1] separated by commas, got \"0.5,1.2\"" \
        --set kd.weight_grid=0.5,1.2
    expect_error students "config key \`kd.students\`: expected distinct client ids in [0, 5)" \
        --set kd.students=1,7
    expect_error peers "config key \`kd.peers\`: 6 peers need as many clients, clients.count is 5" \
        --set kd.peers=6
    # Model files made elsewhere: another number of classes, and datasets
    # that do not match the spec. Client 2 is hosted by rank 2 at -np 3.
    mkdir -p "$work/models"
    "$tool" write-model "$work/models/client-2.h5" 8 3 || fail "write-model failed"
    expect_error classes "client-2.h5: the model of client 2 has 3 classes, the data have 4" \
        --set pretrain.dir="$work/models"
    "$tool" write-model "$work/models/client-2.h5" 8 4 && "$tool" corrupt-model "$work/models/client-2.h5" \
        || fail "corrupt-model failed"
    expect_error layout "client-2.h5" --set pretrain.dir="$work/models"
    grep -q "weight" "$work/layout.err" || fail "layout: the message does not name the dataset: $(cat "$work/layout.err")"
    # Where tuning and KD look.
    expect_error confidence "config key \`kd.confidence\`" --set kd.confidence=sure
    expect_error validation "config key \`kd.validation\`" --set kd.validation=test
    expect_error transfer "config key \`kd.transfer\`" --set kd.transfer=everywhere
    ;;
public)
    # KD on the public set, every tuned method choosing (T, a) on the public
    # validation part: the same tables at -np 1 and 3; another test set
    # changes no choice (tuning never reads it); data-partitioning's
    # teacher share in its rows only; the study's tuned-vs-untuned figures;
    # pretrain makes the partition the study reuses.
    methods=vanilla,data-partitioning,tuned,tuned-ensemble,tuned-data-partitioning
    pub=(--set kd.methods=$methods --set kd.validation=public --set kd.transfer=public
        --set public.size=200 --set kd.students=0,3 --set kd.pairs=ring --set pretrain.dir="$work/models")
    run 1 "$work/p1" "${study[@]}" "${pub[@]}" || fail "-np 1 exited $?: $(tail -2 "$work/p1.err")"
    run 3 "$work/p3" "${study[@]}" "${pub[@]}" || fail "-np 3 exited $?: $(tail -2 "$work/p3.err")"
    cmp -s <(strip_timing "$work/p1/kd_results.csv") <(strip_timing "$work/p3/kd_results.csv") \
        || fail "kd_results.csv differs between -np 1 and -np 3: $(diff <(strip_timing "$work/p1/kd_results.csv") <(strip_timing "$work/p3/kd_results.csv") | head -4)"
    [ "$(wc -l <"$work/p1/kd_results.csv")" = $((1 + 2 * 5)) ] \
        || fail "expected 11 lines in kd_results.csv, got $(wc -l <"$work/p1/kd_results.csv")"
    # teacher_share (17) is a number in [0, 1] for data-partitioning rows, empty elsewhere.
    bad=$(awk -F, 'NR > 1 { dp = $3 ~ /data-partitioning/; if (dp != ($17 != "") || (dp && ($17 < 0 || $17 > 1))) print $3 ":" $17 }' "$work/p1/kd_results.csv")
    [ -z "$bad" ] || fail "teacher_share where it does not belong or out of range: $bad"
    for key in best_tuned_method best_tuned_gain best_untuned_method best_untuned_gain tuned_gain_ratio \
        tuned_improvement_percent; do
        grep -q "\"$key\"" "$work/p1/summary.json" || fail "summary.json lacks $key"
        grep -q "\"$key\"" "$work/p1/kd_summary.json" || fail "kd_summary.json lacks $key"
    done
    grep -q '"tuned-data-partitioning":[[:space:]]*{' "$work/p1/summary.json" \
        || fail "summary.json has no tuned-data-partitioning figures"
    grep -q '"best_tuned_method":[[:space:]]*"tuned' "$work/p1/summary.json" \
        || fail "the best tuned method is not a tuned one: $(grep best_tuned_method "$work/p1/summary.json")"
    # Another test set: the choices and validation accuracies stay.
    run 2 "$work/t77" "${study[@]}" "${pub[@]}" --set data.synthetic_test=77 \
        || fail "test-77 run exited $?: $(tail -2 "$work/t77.err")"
    cmp -s <(cut -d, -f3-7,11,17 "$work/p1/kd_results.csv") <(cut -d, -f3-7,11,17 "$work/t77/kd_results.csv") \
        || fail "choices depend on the test set: $(diff <(cut -d, -f3-7,11,17 "$work/p1/kd_results.csv") <(cut -d, -f3-7,11,17 "$work/t77/kd_results.csv") | head -4)"
    cmp -s <(cut -d, -f8 "$work/p1/kd_results.csv") <(cut -d, -f8 "$work/t77/kd_results.csv") \
        && fail "the test accuracies did not change with the test set (the check cannot fail)"
    # KD on the students' own data, validated on the public part, differs.
    run 2 "$work/local" "${study[@]}" "${pub[@]}" --set kd.transfer=local \
        || fail "local-transfer run exited $?: $(tail -2 "$work/local.err")"
    cmp -s <(grep ',vanilla,' "$work/p1/kd_results.csv" | cut -d, -f9) \
        <(grep ',vanilla,' "$work/local/kd_results.csv" | cut -d, -f9) \
        && fail "kd.transfer public and local gave the same vanilla results"
    # KD on the public set, tuned on each student's own split: the tuned
    # rows have a validation accuracy, other than on the public part.
    run 2 "$work/own" "${study[@]}" "${pub[@]}" --set kd.validation=local --set kd.methods=tuned \
        || fail "local-validation run exited $?: $(tail -2 "$work/own.err")"
    [ "$(awk -F, 'NR > 1 && $11 != ""' "$work/own/kd_results.csv" | wc -l)" = 2 ] \
        || fail "local validation: expected 2 tuned rows with a validation accuracy: $(cat "$work/own/kd_results.csv")"
    cmp -s <(grep ',tuned,' "$work/p1/kd_results.csv" | cut -d, -f11) \
        <(grep ',tuned,' "$work/own/kd_results.csv" | cut -d, -f11) \
        && fail "local and public validation gave the same validation accuracies"
    # pretrain with the same keys holds the same public rows out: its
    # models are the study's, reused.
    run 2 "$work/pre" "${study[@]}" "${pub[@]}" --set mode=pretrain \
        || fail "pretrain exited $?: $(tail -2 "$work/pre.err")"
    [ "$(grep -o '"reused"' "$work/pre/pretrain.json" | wc -l)" = 5 ] \
        || fail "pretrain did not reuse the study's 5 models: $(cat "$work/pre/pretrain.json")"
    ;;
public-bad-input)
    # Where tuning and KD look, refused before anything trains: one message
    # naming the key, non-zero exit on every rank, no hang.
    expect_error() { # NAME MESSAGE [args...]
        local name=$1 message=$2
        shift 2
        run 3 "$work/$name" "${study[@]}" "$@"
        test_check_error "$name" $? "$work/$name.err" "$message"
    }
    expect_error public-empty "config key \`public.size\`" --set kd.validation=public --set public.size=0
    expect_error no-transfer "config key \`kd.validation_size\`: the public validation part takes all 200 public rows" \
        --set kd.validation=public --set kd.transfer=public --set public.size=200 --set kd.validation_size=200
    expect_error too-few "config key \`kd.validation_size\`: 300 validation rows, the public set has 200" \
        --set kd.validation=public --set public.size=200 --set kd.validation_size=300
    # A public file holding the clients' own samples, and one holding the
    # test set, cannot be a validation set.
    "$tool" write-data "$work/train.h5" 1000 8 4 0 && "$tool" write-data "$work/test.h5" 300 8 4 1 \
        || fail "write-data failed"
    files=(--set data.name=hdf5 --set data.train_file="$work/train.h5" --set data.test_file="$work/test.h5")
    expect_error overlap-transfer "config key \`kd.validation\`: sample " \
        "${files[@]}" --set kd.validation=public --set public.source="$work/train.h5" --set public.size=100
    grep -q "of the public validation set is sample [0-9]* of client [0-9]*'s data" "$work/overlap-transfer.err" \
        || fail "overlap-transfer: the message does not say which samples: $(cat "$work/overlap-transfer.err")"
    expect_error overlap-test "the public set must not overlap the test set" \
        "${files[@]}" --set kd.validation=public --set public.source="$work/test.h5" --set public.size=100
    # The same files with a disjoint public file run (the checks can pass).
    "$tool" write-data "$work/public.h5" 100 8 4 2 || fail "write-data failed"
    run 3 "$work/public-file" "${study[@]}" "${files[@]}" --set kd.validation=public \
        --set public.source="$work/public.h5" --set kd.methods=tuned --set kd.students=1 \
        --set kd.pairs=ring || fail "a disjoint public file was refused: $(tail -2 "$work/public-file.err")"
    ;;
test-set)
    # Tuned KD chooses (T, a) without the test set: another test set changes
    # the accuracies, never the choices. (Every run also keeps the test set
    # sealed while distilling, so a read would fault; test_kd_methods shows
    # that the seal faults.)
    run 2 "$work/a" "${study[@]}" --set kd.methods=tuned --set data.synthetic_test=300 \
        || fail "run a exited $?: $(tail -1 "$work/a.err")"
    run 2 "$work/b" "${study[@]}" --set kd.methods=tuned --set data.synthetic_test=77 \
        || fail "run b exited $?: $(tail -1 "$work/b.err")"
    # Columns: ...,student(4),teachers(5),temperature(6),weight(7),before(8),after(9),...,validation(11)
    cmp -s <(cut -d, -f3-7,11 "$work/a/kd_results.csv") <(cut -d, -f3-7,11 "$work/b/kd_results.csv") \
        || fail "the tuned choices depend on the test set: $(diff <(cut -d, -f3-7,11 "$work/a/kd_results.csv") <(cut -d, -f3-7,11 "$work/b/kd_results.csv") | head -4)"
    cmp -s <(cut -d, -f8 "$work/a/kd_results.csv") <(cut -d, -f8 "$work/b/kd_results.csv") \
        && fail "the test accuracies did not change with the test set (the check cannot fail)"
    [ "$(cut -d, -f6,7 "$work/a/kd_results.csv" | sort -u | wc -l)" -gt 2 ] \
        || echo "note: every tuned run chose the same (T, a)"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac

test_end
