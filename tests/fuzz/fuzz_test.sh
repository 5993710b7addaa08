#!/usr/bin/env bash
# The fuzz suite, run by meson test:
#   fuzz_test.sh CASES CLI_CASES MPIEXEC FEDKD_SIM FUZZ_READ FUZZ_MUTATE IDX2H5 SOURCE_DIR
#
# Seeds are made at test time by the project's own tools: config files and
# sweep grids from configs/, a small IDX pair (plain and gzipped), an HDF5
# dataset converted from it by fedkd-idx2h5, a checkpoint of every algorithm
# (one round on synthetic data) and a model file exported from one. CASES
# seeded mutations (fuzz_mutate, case i uses seed i) go through the readers
# in fuzz_read, one process each; CLI_CASES more go through fedkd-sim itself
# (inspect, --resume, --config, --set). Each case has a timeout.
#
# Outcomes: `ok` (exit 0), `refused` (exit 1 with exactly one error line),
# and the failures: `crash` (a signal), `hang` (the timeout), `sanitizer`
# (an AddressSanitizer / UndefinedBehaviorSanitizer / leak report),
# `bad-refusal` (a refusal of no line or of several lines, or another exit
# code). Any failure fails the test; its input stays in a kept directory
# with the command that reproduces it.
set -uo pipefail
cases=$1 cli_cases=$2 mpiexec=$3 sim=$4 reader=$5 mutate=$6 idx2h5=$7 source_dir=$8

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
case_name=fuzz
test_begin fuzz
export FEDKD_NP=1
# A sanitizer report must not look like a refusal: a distinct exit code.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:exitcode=86:allocator_may_return_null=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:exitcode=86"
export LSAN_OPTIONS="${LSAN_OPTIONS:-}:exitcode=86"
started=$(date +%s)
seeds="$work/seeds"
kept=""
mkdir -p "$seeds" "$work/cases"

# ---- seeds ------------------------------------------------------------------
cp "$source_dir"/configs/*.json "$seeds/" || fail "copy configs"
# A small IDX pair: 12 images of 6 x 5 pixels, labels 0..2 (big-endian header).
idx_header() { printf "\\x00\\x00\\x08\\x$1"; shift; for n in "$@"; do printf "\\x00\\x00\\x00\\x$(printf %02x "$n")"; done; }
# Pixels from a fixed pattern, not /dev/urandom: the seeds must not vary.
{ idx_header 03 12 6 5; for i in $(seq 0 359); do printf "\\x$(printf %02x $((i * 37 % 256)))"; done; } >"$seeds/images.idx"
{ idx_header 01 12; for i in $(seq 0 11); do printf "\\x0$((i % 3))"; done; } >"$seeds/labels.idx"
gzip -n -c "$seeds/images.idx" >"$seeds/images.idx.gz"
gzip -n -c "$seeds/labels.idx" >"$seeds/labels.idx.gz"
"$idx2h5" "$seeds/images.idx" "$seeds/labels.idx" "$seeds/data.h5" >/dev/null 2>&1 || fail "fedkd-idx2h5"
# A checkpoint of every algorithm, and a model file.
algorithms=(fedavg fedprox feddf fedmd dsfl fd dml)
tiny=(--quiet --set mode=federated --set public.size=40 --set data.name=synthetic
    --set data.synthetic_train=240 --set data.synthetic_test=40 --set data.synthetic_features=6
    --set data.synthetic_classes=3 --set clients.count=3 --set partition.min_size=5 --set rounds=1
    --set 'model=[{"type":"dense","units":4},{"type":"relu"},{"type":"dense","units":3}]')
# One sweep over the algorithms: one process start instead of seven.
echo "{\"grid\": {\"algorithm\": [\"$(echo "${algorithms[@]}" | sed 's/ /", "/g')\"]}," \
    "\"output\": \"$work/sweep\"}" >"$work/algorithms.json"
timeout -k 5 300 "$sim" sweep "$work/algorithms.json" "${tiny[@]}" >/dev/null 2>"$work/sweep.err" \
    || fail "seed sweep: $(tail -2 "$work/sweep.err")"
for p in "${!algorithms[@]}"; do
    cp "$work/sweep/point-$(printf %04d "$p")/checkpoint-000001.h5" \
        "$seeds/checkpoint-${algorithms[$p]}.h5" || fail "no checkpoint of ${algorithms[$p]}"
done
timeout -k 5 60 "$sim" export --set run.dir="$work/sweep/point-0000" --output "$seeds/model.h5" \
    >/dev/null 2>&1 || fail "seed export"
[ "$failures" = 0 ] || test_end
seeded=$(($(date +%s) - started))

# kind  seed file  mutation  reader arguments (@ = the mutated file)
table=(
    "config fedavg.json text config @"
    "config fedmd.json text config @"
    "config kd-start.json text config @"
    "grid grid-fedavg-fedprox.json text grid @"
    "grid grid-study-kd.json text grid @"
    "idx images.idx binary idx @ $seeds/labels.idx"
    "idx labels.idx binary idx $seeds/images.idx @"
    "idx images.idx.gz binary idx @ $seeds/labels.idx.gz"
    "idx labels.idx.gz binary idx $seeds/images.idx.gz @"
    "h5data data.h5 binary h5data @"
    "model model.h5 binary model @"
    "set - value set @"
)
for a in "${algorithms[@]}"; do table+=("checkpoint checkpoint-$a.h5 binary checkpoint @"); done
set_keys=(seed rounds clients.count clients.per_round local.lr local.batch_size local.epochs
    local.weight_decay local.momentum partition.alpha partition.classes_per_client public.size
    kd.temperature kd.weight model clients.models data.train_limit eval.batch_size
    checkpoint.every fedprox.mu server.lr target_accuracy)

declare -A outcome_count
outcome_count=([ok]=0 [refused]=0 [crash]=0 [hang]=0 [sanitizer]=0 [bad-refusal]=0)
keep_case() { # keep_case LABEL FILE COMMAND...: a failing input, kept with its command
    [ -n "$kept" ] || kept=$(mktemp -d "/tmp/fedkd-fuzz-failures.XXXXXX")
    local label=$1 file=$2
    shift 2
    [ -f "$file" ] && cp "$file" "$kept/$label-$(basename "$file")"
    echo "$*" >>"$kept/commands.txt"
}

# classify CODE ERR_FILE ERROR_PREFIX: sets `outcome`
classify() {
    local code=$1 err=$2 prefix=$3
    if grep -aqE 'Sanitizer|runtime error:' "$err"; then outcome=sanitizer
    elif [ "$code" = 124 ] || [ "$code" = 137 ]; then outcome=hang
    elif [ "$code" -gt 128 ]; then outcome=crash
    elif [ "$code" = 0 ]; then outcome=ok
    elif [ "$code" = 1 ] && [ "$(grep -ac . "$err")" = 1 ] && [ "$(grep -ac "^$prefix" "$err")" = 1 ]; then
        outcome=refused
    else outcome=bad-refusal
    fi
}

# ---- the readers: every mutated input first, then one batch -------------------
list="$work/cases/list"
: >"$list"
for ((i = 0; i < cases; i++)); do
    row=(${table[$((i % ${#table[@]}))]})
    kind=${row[0]} seed_file=${row[1]} how=${row[2]}
    args=("${row[@]:3}")
    if [ "$how" = value ]; then
        value=$("$mutate" value "$i")
        mutated="${set_keys[$((i / ${#table[@]} % ${#set_keys[@]}))]}=$value"
    else
        mutated="$work/cases/$i-$seed_file"
        "$mutate" "$how" "$i" "$seeds/$seed_file" "$mutated" || { fail "mutate $i"; continue; }
    fi
    args=("${args[@]/#@/$mutated}")
    (IFS=$'\t'; echo "$i	${args[*]}") >>"$list"
done
mutated_at=$(date +%s)
"$reader" batch "$list" 20 >"$work/cases/outcomes" || fail "fuzz_read batch exited $?"
batch_seconds=$(($(date +%s) - mutated_at))
while IFS=$'\t' read -r i outcome first; do
    outcome_count[$outcome]=$((outcome_count[$outcome] + 1))
    if [ "$outcome" != ok ] && [ "$outcome" != refused ]; then
        line=$(grep -a -m1 "^$i	" "$list")
        fail "case $i: $outcome: $first"
        keep_case "$i" "$(echo "$line" | cut -f3)" "$reader" "$(echo "$line" | cut -f2- | tr '\t' ' ')"
        cp "$list.$i.err" "$kept/$i.err" 2>/dev/null
    fi
done <"$work/cases/outcomes"
[ "$(grep -ac . "$work/cases/outcomes")" = "$(grep -ac . "$list")" ] \
    || fail "fuzz_read batch reported $(grep -ac . "$work/cases/outcomes") of $(grep -ac . "$list") cases"

# ---- fedkd-sim end to end -----------------------------------------------------
cli_kinds=(inspect-model inspect-checkpoint resume config set)
for ((j = 0; j < cli_cases; j++)); do
    i=$((cases + j))
    kind=${cli_kinds[$((j % ${#cli_kinds[@]}))]}
    a=${algorithms[$((j / ${#cli_kinds[@]} % ${#algorithms[@]}))]}
    np=1
    case $kind in
    inspect-model) mutated="$work/cases/$i-model.h5"; "$mutate" binary $i "$seeds/model.h5" "$mutated"
        command=("$sim" inspect "$mutated") ;;
    inspect-checkpoint) mutated="$work/cases/$i-$a.h5"; "$mutate" binary $i "$seeds/checkpoint-$a.h5" "$mutated"
        command=("$sim" inspect "$mutated") ;;
    resume) mutated="$work/cases/$i-$a.h5"; "$mutate" binary $i "$seeds/checkpoint-$a.h5" "$mutated"
        np=2
        command=("$sim" "${tiny[@]}" --set algorithm=$a --set rounds=2 --set run.dir="$work/cases/run-$i"
            --resume "$mutated") ;;
    config) mutated="$work/cases/$i-fedavg.json"; "$mutate" text $i "$seeds/fedavg.json" "$mutated"
        command=("$sim" --print-config --config "$mutated") ;;
    set) mutated=""
        command=("$sim" --print-config --set "${set_keys[$((j % ${#set_keys[@]}))]}=$("$mutate" value $i)") ;;
    esac
    if [ $np = 1 ]; then
        timeout -k 2 60 "${command[@]}" >/dev/null 2>"$work/case.err"
    else
        timeout -k 2 60 "$mpiexec" --oversubscribe -np $np "${command[@]}" >/dev/null 2>"$work/case.err"
    fi
    code=$?
    # A --resume that is accepted trains one more round: ok. mpiexec's own
    # banner about a rank's non-zero exit is not part of the refusal.
    grep -aE '^(fedkd-sim|\[rank)|Sanitizer|runtime error:' "$work/case.err" >"$work/case.ours"
    grep -aqE 'exited on signal|Signal: ' "$work/case.err" && code=139
    classify $code "$work/case.ours" "fedkd-sim: error: "
    outcome_count[$outcome]=$((outcome_count[$outcome] + 1))
    if [ "$outcome" != ok ] && [ "$outcome" != refused ]; then
        fail "cli case $i ($kind $a): $outcome: $(head -c 600 "$work/case.err")"
        keep_case "$i" "$mutated" "${command[@]}"
    fi
    rm -rf "$work/cases/run-$i"
    [ -n "$mutated" ] && rm -f "$mutated"
done

seconds=$(($(date +%s) - started))
total=$((cases + cli_cases))
echo "fuzz: $total cases ($cases readers, $cli_cases fedkd-sim), ok ${outcome_count[ok]}," \
    "refused ${outcome_count[refused]}, crash ${outcome_count[crash]}, hang ${outcome_count[hang]}," \
    "sanitizer ${outcome_count[sanitizer]}, bad-refusal ${outcome_count[bad-refusal]};" \
    "${seconds} s (seeds ${seeded} s, reader batch ${batch_seconds} s)"
[ -n "$kept" ] && echo "fuzz: failing inputs and their commands kept in $kept" >&2
test_end
