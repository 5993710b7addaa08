#!/usr/bin/env bash
# The command line on good and bad input: every bad input ends with one
# `fedkd-sim: error:` line naming the file / key and what was expected, a
# non-zero exit on every rank, no hang, and no summary claiming success.
#   cli_test.sh MPIEXEC FEDKD_SIM IDX2H5 FASHION_MNIST_DIR
set -uo pipefail
mpiexec=$1 sim=$2 idx2h5=$3 fashion=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
work=$(mktemp -d /tmp/fedkd-cli-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect_error NP WANT_EXIT "substring" args...
expect_error() {
    local np=$1 want_code=$2 want=$3
    shift 3
    local out="$work/case$RANDOM"
    timeout 60 "$mpiexec" --oversubscribe -np "$np" "$sim" --set run.dir="$out.run" "$@" \
        >"$out.out" 2>"$out.err"
    local code=$?
    if [ $code = 124 ]; then fail "[$*] hung"; return; fi
    [ $code = 0 ] && { fail "[$*] exited 0"; return; }
    # mpiexec reports the first non-zero exit code of a rank.
    [ "$want_code" = any ] || [ $code = "$want_code" ] || fail "[$*] exited $code, expected $want_code"
    local lines
    lines=$(grep -c 'fedkd-sim: error' "$out.err")
    [ "$lines" = 1 ] || fail "[$*] printed $lines error lines, expected 1: $(cat "$out.err")"
    grep -qF -- "$want" "$out.err" || fail "[$*] message lacks '$want': $(grep 'fedkd-sim' "$out.err")"
    if [ -f "$out.run/summary.json" ] && grep -q '"completed"' "$out.run/summary.json"; then
        fail "[$*] left a summary.json that says completed"
    fi
}

# Good: help, version, print-config.
"$sim" --help >"$work/help" || fail "--help exited non-zero"
grep -q 'kd.temperature' "$work/help" || fail "--help does not list the config keys"
# The mode table and the config's choices for `mode` name the same modes:
# --help lists the table's rows, each with its one line, and the key's choices.
table_modes=$(sed -n '/^modes (config key/,/^$/p' "$work/help" | awk '/^  / {print $1}' | sort | tr '\n' ' ')
choice_modes=$(grep -E '^  mode +string' "$work/help" | grep -o '"[a-z-]*"' | sed 1d | tr -d '"' | sort | tr '\n' ' ')
[ -n "$table_modes" ] || fail "--help lists no modes"
[ "$table_modes" = "$choice_modes" ] ||
    fail "mode table ($table_modes) and the choices of config key mode ($choice_modes) differ"
"$sim" --version | grep -qE '^fedkd-sim [0-9]+\.[0-9]+' || fail "--version"
"$sim" --print-config --set local.lr=0.125 | grep -q '"lr":0.125' || fail "--print-config does not show the override"

# Config: malformed JSON with line and column, unknown key, wrong type, range.
printf '{\n  "rounds": 3,\n  "local": {"lr": 0.1,,}\n}\n' >"$work/bad.json"
expect_error 2 1 "bad.json:3:" --config "$work/bad.json"
printf '{"local": {"lrr": 0.1}}\n' >"$work/unknown.json"
expect_error 2 1 "did you mean \`local.lr\`" --config "$work/unknown.json"
expect_error 2 1 "kd.temperature" --set kd.temperature=hot
expect_error 2 1 "kd.temperature" --set kd.temperature=0
expect_error 2 1 "kd.weight" --set kd.weight=1.5
expect_error 2 1 "did you mean" --set rounds_=3
expect_error 1 1 "$work/missing.json" --config "$work/missing.json"
expect_error 1 2 "unknown option" --frobnicate
# Model: unknown preset, unknown layer kind.
syn=(--set data.name=synthetic --set mode=centralized --set rounds=1)
expect_error 2 1 "unknown model \`resnet\`" "${syn[@]}" --set model=resnet
expect_error 2 1 "did you mean \`dense\`" "${syn[@]}" --set 'model=[{"type":"dens","units":4}]'
# Data: missing directory (how to install), truncated gzip, mismatched counts.
expect_error 2 1 "apt-get install dataset-fashion-mnist" --set data.dir="$work/none"
if [ -d "$fashion" ]; then
    mkdir -p "$work/trunc" "$work/mismatch"
    cp "$fashion"/* "$work/trunc/"
    head -c 3000000 "$fashion/train-images-idx3-ubyte.gz" >"$work/trunc/train-images-idx3-ubyte.gz"
    expect_error 2 1 "train-images-idx3-ubyte.gz" --set data.dir="$work/trunc" --set mode=centralized
    cp "$fashion"/* "$work/mismatch/"
    cp "$fashion/t10k-labels-idx1-ubyte.gz" "$work/mismatch/train-labels-idx1-ubyte.gz"
    expect_error 2 1 "has 60000 records but labels file" --set data.dir="$work/mismatch" --set mode=centralized
    # HDF5: a converted subset works; a file without /labels does not.
    "$idx2h5" "$fashion/train-images-idx3-ubyte.gz" "$fashion/train-labels-idx1-ubyte.gz" \
        "$work/train.h5" --limit 2000 >/dev/null || fail "idx2h5 train"
    "$idx2h5" "$fashion/t10k-images-idx3-ubyte.gz" "$fashion/t10k-labels-idx1-ubyte.gz" \
        "$work/test.h5" --limit 500 >/dev/null || fail "idx2h5 test"
    timeout 120 "$mpiexec" --oversubscribe -np 3 "$sim" --quiet --set data.name=hdf5 \
        --set data.train_file="$work/train.h5" --set data.test_file="$work/test.h5" \
        --set clients.count=4 --set rounds=2 --set mode=federated --set run.dir="$work/h5run" \
        >/dev/null 2>"$work/h5run.err" || fail "federated run on HDF5 data: $(cat "$work/h5run.err")"
    printf 'not an hdf5 file\n' >"$work/fake.h5"
    expect_error 2 1 "fake.h5" --set data.name=hdf5 --set data.train_file="$work/fake.h5" \
        --set data.test_file="$work/test.h5"
fi

# Every mode runs from the command line: pretrain writes the model files,
# kd-study its tables; only federated and kd-start runs resume.
kd=(--set data.name=synthetic --set data.synthetic_train=600 --set clients.count=3
    --set pretrain.epochs=1 --set kd.methods=vanilla)
timeout 120 "$mpiexec" --oversubscribe -np 2 "$sim" --quiet "${kd[@]}" --set mode=pretrain \
    --set run.dir="$work/pre" >"$work/pre.out" 2>&1 || fail "mode=pretrain: $(tail -2 "$work/pre.out")"
[ -s "$work/pre/pretrain.json" ] && [ -s "$work/pre/pretrained/client-2.h5" ] \
    || fail "mode=pretrain wrote no pretrain.json or model files"
timeout 120 "$mpiexec" --oversubscribe -np 2 "$sim" --quiet "${kd[@]}" --set mode=kd-study \
    --set run.dir="$work/study" >"$work/study.out" 2>&1 || fail "mode=kd-study: $(tail -2 "$work/study.out")"
grep -q '"vanilla"' "$work/study/kd_summary.json" 2>/dev/null || fail "mode=kd-study wrote no kd_summary.json"
[ -e "$work/study/rounds.csv" ] && fail "mode=kd-study ran a federation (rounds.csv written)"
expect_error 2 1 "only federated and kd-start runs" "${kd[@]}" --set mode=kd-study --resume "$work/x.h5"

if [ $failures != 0 ]; then
    echo "cli: $failures failure(s)" >&2
    exit 1
fi
echo "cli: passed"
