# Sourced by the MPI test scripts (tests/*/*_test.sh):
#   test_begin NAME   Open MPI's environment for root and oversubscription,
#                     a scratch directory $work (removed at exit unless the
#                     script sets its own EXIT trap afterwards), failures=0
#   fail MESSAGE      counts a failure and says why on stderr
#   test_run TIMEOUT PROGRAM NP RUN_DIR [args...]
#                     PROGRAM under mpiexec ($mpiexec) with run.dir=RUN_DIR,
#                     output in RUN_DIR.out / RUN_DIR.err
#   test_check_error LABEL CODE ERR_FILE "substring"
#                     a run that should have failed: a non-zero exit CODE that
#                     is not timeout's 124 (a hang), and exactly one
#                     `fedkd-sim: error` line in ERR_FILE, holding the substring
#   test_expect_error NP "substring" [args...]
#                     fedkd-sim ($sim) on NP ranks with --quiet must fail as
#                     test_check_error says
#   test_end          exit status 1 after any failure, else a "passed" line
# The script sets case_name and mpiexec before calling them.

test_begin() {
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
    export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
    work=$(mktemp -d "/tmp/fedkd-$1-test.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    failures=0
}

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

test_run() {
    local seconds=$1 program=$2 np=$3 dir=$4
    shift 4
    timeout "$seconds" "$mpiexec" --oversubscribe -np "$np" "$program" --set run.dir="$dir" "$@" \
        >"$dir.out" 2>"$dir.err"
}

test_check_error() {
    local label=$1 code=$2 err=$3 want=$4
    if [ "$code" = 0 ] || [ "$code" = 124 ]; then
        fail "[$label] exited $code (expected an error, no hang)"
        return
    fi
    local lines
    lines=$(grep -c 'fedkd-sim: error' "$err")
    [ "$lines" = 1 ] || fail "[$label] printed $lines error lines, expected 1: $(cat "$err")"
    grep -qF -- "$want" "$err" || fail "[$label] message lacks '$want': $(grep 'fedkd-sim' "$err")"
}

test_expect_error() {
    local np=$1 want=$2
    shift 2
    local dir="$work/bad$RANDOM"
    test_run 120 "$sim" "$np" "$dir" "$@" --quiet
    test_check_error "$*" $? "$dir.err" "$want"
}

test_end() {
    if [ "$failures" != 0 ]; then
        echo "$case_name: $failures failure(s)" >&2
        exit 1
    fi
    echo "$case_name: passed"
}
