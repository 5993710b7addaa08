#!/usr/bin/env bash
# Tests of local.steps and of the whole study as one command, run by meson test:
#   study_test.sh CASE MPIEXEC FEDKD_SIM FASHION_MNIST_DIR SOURCE_ROOT [launch/study options]
# Runs on a small subset of Fashion-MNIST and is skipped (exit 77) when it is
# not installed (the quick study also when matplotlib is missing). Each case
# exits non-zero, saying why, when what it checks does not hold.
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3 fashion=$4 source_root=$5
shift 5
study_options=("$@")

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
test_begin study
study=$source_root/launch/study
# Debian's Python, as launch/study's own first line: it has python3-matplotlib.
python=/usr/bin/python3

needs_fashion() {
    if [ ! -f "$fashion/train-images-idx3-ubyte.gz" ]; then
        echo "SKIP: Fashion-MNIST is not in $fashion"
        exit 77
    fi
}

# Columns of rounds.csv that do not depend on P or time (up to bytes_up).
rounds_columns() { cut -d, -f1-7 "$1/rounds.csv"; }
checksum_of() { grep -o '"params_checksum":[^,]*' "$1/summary.json"; }

case $case_name in
local-steps)
    needs_fashion
    # 2048 images, 4 IID clients of 512: 16 batches of 32 per epoch.
    common=(--set mode=federated --set data.name=fashion-mnist --set data.dir="$fashion"
        --set data.train_limit=2048 --set data.test_limit=500 --set model=mlp
        --set clients.count=4 --set clients.per_round=1.0 --set partition.min_size=10
        --set local.batch_size=32 --set local.lr=0.05 --set rounds=3 --set checkpoint.every=0
        --set seed=5 --quiet)
    iid=(--set partition.scheme=iid)
    # Whole epochs of steps train exactly as epochs, in every round.
    test_run 200 "$sim" 2 "$work/epochs2" "${common[@]}" "${iid[@]}" --set local.epochs=2 ||
        fail "local.epochs=2 exited $?: $(tail -3 "$work/epochs2.err")"
    test_run 200 "$sim" 3 "$work/steps32" "${common[@]}" "${iid[@]}" --set local.steps=32 ||
        fail "local.steps=32 exited $?: $(tail -3 "$work/steps32.err")"
    cmp -s <(rounds_columns "$work/epochs2") <(rounds_columns "$work/steps32") ||
        fail "32 steps (2 epochs of 16 batches) differ from local.epochs=2: $(diff <(rounds_columns "$work/epochs2") <(rounds_columns "$work/steps32") | head -4)"
    [ "$(checksum_of "$work/epochs2")" = "$(checksum_of "$work/steps32")" ] ||
        fail "32 steps end in other parameters than 2 epochs"
    # Fewer steps than an epoch train something else.
    test_run 200 "$sim" 2 "$work/steps5" "${common[@]}" "${iid[@]}" --set local.steps=5 ||
        fail "local.steps=5 exited $?: $(tail -3 "$work/steps5.err")"
    [ "$(checksum_of "$work/steps5")" != "$(checksum_of "$work/epochs2")" ] ||
        fail "5 steps end in the same parameters as 2 epochs"
    grep -q '"steps":[[:space:]]*5' "$work/steps5/summary.json" ||
        fail "summary.json's config lacks local.steps = 5"
    # Skewed clients, half of them per round, 13 steps (more than one pass
    # for the small clients, which wrap to a new shuffle): the same at P = 1, 2, 4.
    skew=(--set partition.scheme=dirichlet --set partition.alpha=0.3 --set clients.per_round=0.5
        --set local.steps=13)
    for np in 1 2 4; do
        test_run 200 "$sim" "$np" "$work/skew$np" "${common[@]}" "${skew[@]}" ||
            fail "local.steps=13 at -np $np exited $?: $(tail -3 "$work/skew$np.err")"
    done
    for np in 2 4; do
        cmp -s <(rounds_columns "$work/skew1") <(rounds_columns "$work/skew$np") ||
            fail "local.steps at -np $np differs from -np 1: $(diff <(rounds_columns "$work/skew1") <(rounds_columns "$work/skew$np") | head -4)"
        [ "$(checksum_of "$work/skew1")" = "$(checksum_of "$work/skew$np")" ] ||
            fail "local.steps: final parameters at -np $np differ from -np 1"
    done
    # Centralized training takes local.steps too: one round, 10 steps.
    test_run 200 "$sim" 1 "$work/central" "${common[@]}" --set mode=centralized --set rounds=1 \
        --set local.steps=10 || fail "centralized with local.steps exited $?: $(tail -3 "$work/central.err")"

    # Both keys set: one line naming both, and every rank exits non-zero.
    # mpiexec must not kill the slower ranks when the first one exits, or
    # they could not say how they exit (it then exits 0 itself: the ranks'
    # own codes are what count).
    timeout 100 "$mpiexec" --oversubscribe --mca orte_abort_on_non_zero_status 0 -np 3 sh -c \
        '"$0" "$@" > /dev/null 2>> "'"$work"'/both.err"; c=$?; echo $c > "'"$work"'/rank-$OMPI_COMM_WORLD_RANK.code"; exit $c' \
        "$sim" "${common[@]}" --set local.steps=5 --set local.epochs=2 --set run.dir="$work/both"
    code=$?
    [ "$code" = 124 ] || code=$(cat "$work/rank-0.code" 2>/dev/null || echo 0)
    test_check_error both-keys "$code" "$work/both.err" \
        'config keys `local.steps` (5, from --set) and `local.epochs` (2, from --set) are both set'
    for rank in 0 1 2; do
        rank_code=$(cat "$work/rank-$rank.code" 2>/dev/null)
        [ -n "$rank_code" ] && [ "$rank_code" != 0 ] ||
            fail "rank $rank exited '${rank_code:-?}' with both keys set, expected non-zero"
    done
    [ "$(wc -l <"$work/both.err")" = 1 ] || fail "the conflict printed more than one line: $(cat "$work/both.err")"
    # A file that writes the default epochs out combines with local.steps.
    printf '{"local": {"epochs": 1, "steps": 4}}\n' >"$work/steps.json"
    test_run 200 "$sim" 2 "$work/file" "${common[@]}" "${iid[@]}" --config "$work/steps.json" ||
        fail "local.epochs 1 (the default) with local.steps in a file exited $?: $(tail -2 "$work/file.err")"
    ;;

bad-input)
    # The study runner refuses what it cannot run, with one message and exit 2.
    check_study_error() { # LABEL SUBSTRING launch/study arguments...
        local label=$1 want=$2
        shift 2
        "$python" "$study" "$@" --plan >"$work/$label.out" 2>"$work/$label.err"
        local code=$?
        [ "$code" = 2 ] || fail "[$label] exited $code, expected 2"
        grep -qF -- "$want" "$work/$label.err" ||
            fail "[$label] message lacks '$want': $(cat "$work/$label.err")"
        [ "$(grep -c 'launch/study: error' "$work/$label.err")" = 1 ] ||
            fail "[$label] expected one error line: $(cat "$work/$label.err")"
    }
    quick=$source_root/configs/study/quick.json
    "$python" - "$quick" "$work" <<'EOF'
import json, sys
study = json.load(open(sys.argv[1]))
def variant(name, change):
    copy = json.loads(json.dumps(study))
    change(copy)
    json.dump(copy, open("%s/%s.json" % (sys.argv[2], name), "w"))
variant("scheme", lambda s: s["kd_study"].__setitem__("schemes", ["iid", "dirichlet"]))
variant("rounds", lambda s: s["kd_start"]["rounds"].pop("3"))
variant("seeds", lambda s: s.pop("seeds"))
variant("empty", lambda s: (s.pop("kd_study"), s.pop("kd_start")))
EOF
    check_study_error scheme 'unknown scheme `dirichlet`' "$work/scheme.json" --out "$work/s"
    check_study_error rounds '`rounds` has no entry for local.steps 3' "$work/rounds.json" --out "$work/s"
    check_study_error seeds '`seeds` is missing' "$work/seeds.json" --out "$work/s"
    check_study_error empty 'nothing to run' "$work/empty.json" --out "$work/s"
    check_study_error set-key 'no entry `kd_start.model`' --quick --out "$work/s" --set 'kd_start.model=["mlp"]'
    check_study_error set-form 'expects KEY=JSON' --quick --out "$work/s" --set kd_start.models
    check_study_error missing 'No such file' "$work/none.json"
    # --plan writes self-contained grids that fedkd-sim loads: a plan of the
    # quick study, one grid checked by the simulator itself (a sweep of an
    # unknown key would fail here).
    "$python" "$study" --quick --out "$work/plan" --plan >"$work/plan.out" 2>&1 ||
        fail "--plan exited $?: $(tail -3 "$work/plan.out")"
    grep -q 'launch/slurm-sweep.sbatch .*/grids/kd-grid-iid-s1.json' "$work/plan.out" ||
        fail "--plan does not print the sbatch command of kd-grid-iid-s1: $(head -5 "$work/plan.out")"
    [ -f "$work/plan/grids/start-dirichlet0.5-mlp-c6-k3-s2.json" ] || fail "--plan wrote no kd-start grid"
    ;;

quick)
    needs_fashion
    if ! "$python" -c 'import matplotlib' 2>/dev/null; then
        echo "SKIP: $python has no matplotlib; install python3-matplotlib (./launch/test does)"
        exit 77
    fi
    export FEDKD_SIM=$sim FEDKD_MPIRUN=$mpiexec
    out=$work/q
    # meson's timeout (times launch/test's multiplier under the sanitizers)
    # bounds the case; the ones here only catch a hang.
    start=$(date +%s)
    timeout 3000 "$python" "$study" --quick --out "$out" "${study_options[@]}" >"$work/run1.out" 2>&1
    code=$?
    [ "$code" = 0 ] || { fail "launch/study --quick exited $code: $(tail -5 "$work/run1.out")"; test_end; }
    echo "quick study: $(( $(date +%s) - start )) s" >&2
    report=$out/REPORT.md
    [ -s "$report" ] || fail "no REPORT.md"
    grep -q 'ETA' "$work/run1.out" || fail "no progress line with an ETA: $(head -5 "$work/run1.out")"
    for want in "## The study's claims beside ours" '| +16% |' '| +139% |' '| 60.6% |' \
        '### Gain per method and scheme' '### Best (T, weight) per scheme and method' \
        '### Tuned over untuned per scheme' 'non-IID average' \
        '### dirichlet(0.5), mlp, 6 clients, target 0.60' '| iid |' '| shards(2) |'; do
        grep -qF -- "$want" "$report" || fail "REPORT.md lacks '$want'"
    done
    # Every figure it shows exists and is a PNG; heatmaps of the 4 grid
    # methods, the rounds bars and the accuracy curves.
    figures=$(grep -o '(figures/[^)]*)' "$report" | tr -d '()')
    [ "$(echo "$figures" | grep -c png)" -ge 6 ] || fail "expected at least 6 figures: $figures"
    for figure in $figures; do
        [ "$(head -c 4 "$out/$figure" | tail -c 3)" = PNG ] || fail "$figure is not a PNG"
    done
    # The tables agree with the points' own files.
    "$python" - "$out" <<'EOF' || fail "REPORT.md does not agree with the points' files"
import glob, json, os, re, sys
out = sys.argv[1]
report = open(os.path.join(out, "REPORT.md")).read()
problems = []
# Vanilla KD's untuned gain under iid: the mean over seeds of the (1, 0.5)
# point's kd_summary.json.
gains = []
for sweep in sorted(glob.glob(os.path.join(out, "sweeps", "kd-grid-iid-s*"))):
    rows = json.load(open(os.path.join(sweep, "results.json")))["rows"]
    point = [r for r in rows if r["kd.temperature"] == 1 and r["kd.weight"] == 0.5][0]
    summary = json.load(open(os.path.join(sweep, "point-%04d" % point["point"], "kd_summary.json")))
    method = [m for m in summary["methods"] if m["method"] == "vanilla"][0]
    gains.append(method["gain_mean"])
want = "%+.4f" % (sum(gains) / len(gains))
row = re.search(r"^\| iid \| ([^|]+) \|", report, re.M)
if not row or not row.group(1).strip().startswith(want):
    problems.append("iid vanilla gain: report says %s, the points %s" % (row and row.group(1), want))
# The KD start's total rounds at 1.0 clients per round, one epoch: the mean
# over seeds of kd_start.json.
totals = []
for sweep in sorted(glob.glob(os.path.join(out, "sweeps", "start-dirichlet0.5-mlp-c6-k0-s*"))):
    rows = json.load(open(os.path.join(sweep, "results.json")))["rows"]
    point = [r for r in rows if r["clients.per_round"] == 1][0]
    starts = json.load(open(os.path.join(sweep, "point-%04d" % point["point"], "kd_start.json")))["starts"]
    kd = [s for s in starts if s["start"] == "kd"][0]
    if kd["total_rounds"] != kd["rounds_to_target"] + 1:
        problems.append("kd_start.json: total_rounds %s is not rounds_to_target + 1" % kd["total_rounds"])
    totals.append(kd["total_rounds"])
row = re.search(r"^\| 1 \| 1 epoch \| 4 \| [^|]+ \| [^|]+ \| [^|]+ \| ([^|]+) \|", report, re.M)
want = "%.1f" % (sum(totals) / len(totals))
if not row or not row.group(1).strip().startswith(want):
    problems.append("kd total rounds: report says %s, kd_start.json %s" % (row and row.group(1), want))
# The study's metric: the best untuned method is never a tuned one (tuned,
# tuned-<method>), and the validation-tuned column names a tuned method.
table = report.split("### Tuned over untuned per scheme", 1)[-1].split("\n## ", 1)[0]
for line in table.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 12 or cells[0] in ("scheme", "") or cells[0].startswith("---") \
            or cells[0].startswith("non-IID"):
        continue
    if cells[1].startswith("tuned"):
        problems.append("%s: best untuned is the tuned method %s" % (cells[0], cells[1]))
    if not cells[7].startswith("tuned"):
        problems.append("%s: best validation-tuned is %s" % (cells[0], cells[7]))
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
    # Again: nothing left to run, no MPI started, the same report.
    strip_times() { grep -v -e '^- Written' -e 'wall time adds up' "$1"; }
    cp "$report" "$work/first.md"
    timeout 900 "$python" "$study" --quick --out "$out" "${study_options[@]}" >"$work/run2.out" 2>&1 ||
        fail "the rerun exited $?: $(tail -3 "$work/run2.out")"
    grep -q '\[sweep ' "$work/run2.out" && fail "the rerun ran a sweep again: $(grep '\[sweep ' "$work/run2.out" | head -2)"
    grep -qE 'study: ([0-9]+) of \1 points done before' "$work/run2.out" ||
        fail "the rerun does not say every point was done: $(head -5 "$work/run2.out")"
    cmp -s <(strip_times "$work/first.md") <(strip_times "$report") || fail "the rerun's report differs"
    # A lost point runs again, alone, and the report comes out the same
    # (every run is deterministic).
    rm -rf "$out/sweeps/kd-grid-iid-s1/point-0001"
    timeout 900 "$python" "$study" --quick --out "$out" "${study_options[@]}" >"$work/run3.out" 2>&1 ||
        fail "the resumed study exited $?: $(tail -3 "$work/run3.out")"
    grep -q 'kd-grid-iid-s1: 4 point(s), 1 to run' "$work/run3.out" ||
        fail "the resumed study did not run exactly the lost point: $(grep 'sweep ' "$work/run3.out" | head -3)"
    [ "$(grep -c '\[sweep ' "$work/run3.out")" = 1 ] || fail "the resumed study ran more than one sweep"
    cmp -s <(strip_times "$work/first.md") <(strip_times "$report") ||
        fail "the report after re-running one point differs: $(diff <(strip_times "$work/first.md") <(strip_times "$report") | head -6)"
    ;;

*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
test_end
