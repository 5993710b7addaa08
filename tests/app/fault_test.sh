#!/usr/bin/env bash
# One failure path for every rank: a failure on any rank, at any phase,
# ends every rank with a non-zero exit within seconds, its message printed
# once, and no checkpoint lost.
#   fault_test.sh CASE MPIEXEC FEDKD_SIM
# Cases:
#   alone      one rank fails on its own before any collective (the others
#              wait for it in the first one): the job ends, not hangs
#   eval       the server's evaluation fails mid-run, with and without a
#              checkpoint due in that round: one message (the evaluation's),
#              exit 1 on every rank, the older checkpoint kept
#   test-shape test images of another size than the training images, as IDX
#              files: refused before round 1, naming the test file
#   memory     a dense layer of 3,000,000 units (2.4 billion parameters) at
#              -np 3: refused before anything is allocated, one line with the
#              estimate and the limit; SLURM_MEM_PER_NODE as the limit;
#              --dry-run prints every rank's estimate and trains nothing
set -uo pipefail
case_name=$1 mpiexec=$2 sim=$3
source "$(dirname "$0")/../lib.sh"
test_begin fault
syn=(--quiet --set mode=federated --set data.name=synthetic --set rounds=4)

# run_limited LIMIT NP ARGS...: runs fedkd-sim; sets $code, $seconds, $out.
run_limited() {
    local limit=$1 np=$2
    shift 2
    out=$work/out.$RANDOM
    local start end
    start=$(date +%s.%N)
    timeout "$limit" "$mpiexec" --oversubscribe -np "$np" "$sim" "$@" >"$out" 2>&1
    code=$?
    end=$(date +%s.%N)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
}

# count_lines FILE PATTERN: lines of FILE that hold PATTERN.
count_lines() { grep -cF -- "$2" "$1" || true; }

case $case_name in
alone)
    # Without the exit check the three other ranks wait in the set-up's
    # first collective until the time limit.
    FEDKD_TEST_FAIL_ALONE_ON_RANK=2 run_limited 120 4 "${syn[@]}" --set run.dir="$work/alone"
    [ "$code" = 124 ] && fail "the job hung (killed by the 120 s limit)"
    [ "$code" != 0 ] || fail "exit status 0"
    n=$(count_lines "$out" "failed alone on rank 2")
    [ "$n" = 1 ] || fail "the message was printed $n times, expected once: $(cat "$out")"
    echo "alone: exit $code after ${seconds}s"
    ;;
eval)
    # (checkpoint.every, failing round): a checkpoint due in the round whose
    # evaluation fails; none due; the last round, whose final checkpoint the
    # clients used to wait in for ever.
    for pair in 1:2 0:2 0:4; do
        every=${pair%:*} round=${pair#*:}
        dir=$work/eval$every-$round
        FEDKD_TEST_FAIL_EVAL_ROUND=$round run_limited 120 4 "${syn[@]}" --set run.dir="$dir" \
            --set checkpoint.every=$every
        [ "$code" = 124 ] && fail "checkpoint.every=$every round $round: the job hung"
        [ "$code" = 1 ] || fail "checkpoint.every=$every round $round: exit status $code, expected 1: $(cat "$out")"
        n=$(count_lines "$out" "evaluation of round $round failed")
        [ "$n" = 1 ] || fail "checkpoint.every=$every round $round: the evaluation's message printed $n times: $(cat "$out")"
        n=$(grep -c 'error' "$out" || true)
        [ "$n" = 1 ] || fail "checkpoint.every=$every round $round: $n error lines, expected 1: $(cat "$out")"
        if [ "$pair" = 1:2 ]; then
            [ -f "$dir/checkpoint-000001.h5" ] || fail "the checkpoint of round 1 is gone"
            [ -e "$dir/checkpoint-000002.h5" ] && fail "a checkpoint of the failed round 2 was written"
        fi
        echo "eval, checkpoint.every=$every, round $round: exit $code after ${seconds}s"
    done
    ;;
test-shape)
    # 28x28 training images beside 14x14 test images, in the IDX format.
    python3 - "$work/idx" <<'PY' || fail "could not write the IDX files"
import gzip, os, struct, sys
d = sys.argv[1]; os.makedirs(d)
def images(path, n, side):
    with gzip.open(path, 'wb') as f:
        f.write(struct.pack('>IIII', 0x803, n, side, side))
        f.write(bytes((i * 7 + j) % 256 for i in range(n) for j in range(side * side)))
def labels(path, n):
    with gzip.open(path, 'wb') as f:
        f.write(struct.pack('>II', 0x801, n))
        f.write(bytes(i % 10 for i in range(n)))
images(os.path.join(d, 'train-images-idx3-ubyte.gz'), 300, 28)
labels(os.path.join(d, 'train-labels-idx1-ubyte.gz'), 300)
images(os.path.join(d, 't10k-images-idx3-ubyte.gz'), 100, 14)
labels(os.path.join(d, 't10k-labels-idx1-ubyte.gz'), 100)
PY
    run_limited 120 4 --quiet --set mode=federated --set data.name=fashion-mnist \
        --set data.dir="$work/idx" --set clients.count=3 --set rounds=2 \
        --set public.size=0 --set run.dir="$work/shape"
    [ "$code" = 124 ] && fail "the job hung"
    [ "$code" = 1 ] || fail "exit status $code, expected 1: $(cat "$out")"
    n=$(count_lines "$out" "t10k-images-idx3-ubyte.gz")
    [ "$n" = 1 ] || fail "the message naming the test file was printed $n times: $(cat "$out")"
    grep -q 'test samples are 1x14x14' "$out" || fail "the message does not give the shapes: $(cat "$out")"
    [ -e "$work/shape/rounds.jsonl" ] && [ -s "$work/shape/rounds.jsonl" ] &&
        fail "a round ran before the shapes were checked"
    echo "test-shape: exit $code after ${seconds}s"
    ;;
memory)
    # 784 features as Fashion-MNIST's: 2.4 billion parameters.
    huge='[{"type":"flatten"},{"type":"dense","units":3000000},{"type":"relu"},{"type":"dense","units":10}]'
    run_limited 120 3 "${syn[@]}" --set data.synthetic_features=784 --set data.synthetic_classes=10 \
        --set model="$huge" --set run.dir="$work/huge"
    [ "$code" = 124 ] && fail "the huge model hung"
    [ "$code" = 1 ] || fail "huge model: exit status $code, expected 1: $(cat "$out")"
    n=$(count_lines "$out" "not enough memory")
    [ "$n" = 1 ] || fail "huge model: 'not enough memory' printed $n times: $(cat "$out")"
    grep -q "the 3 rank(s) on its node need" "$out" || fail "huge model: no node sum: $(cat "$out")"
    echo "memory, dense 3,000,000 at -np 3: exit $code after ${seconds}s"
    SLURM_MEM_PER_NODE=1 run_limited 120 3 "${syn[@]}" --set run.dir="$work/slurm"
    [ "$code" = 1 ] || fail "SLURM_MEM_PER_NODE=1: exit status $code, expected 1: $(cat "$out")"
    grep -q "but SLURM_MEM_PER_NODE allows 1.0 MiB" "$out" ||
        fail "SLURM_MEM_PER_NODE=1 is not the limit named: $(cat "$out")"
    run_limited 120 3 "${syn[@]}" --dry-run --set run.dir="$work/dry"
    [ "$code" = 0 ] || fail "--dry-run: exit status $code: $(cat "$out")"
    for r in 0 1 2; do
        grep -q "^  rank $r: .*(models .*, data .*, buffers .*); node .* of " "$out" ||
            fail "--dry-run: no estimate for rank $r: $(cat "$out")"
    done
    # The round's node-shared memory is counted once, by the node's first rank.
    n=$(grep -c "^  rank 0: .*, shared by the node [0-9.]* [KMG]*i*B); node " "$out")
    [ "$n" = 1 ] || fail "--dry-run: rank 0 does not count the node-shared memory: $(cat "$out")"
    n=$(grep -c "shared by the node" "$out")
    [ "$n" = 1 ] || fail "--dry-run: node-shared memory counted $n times: $(cat "$out")"
    [ -e "$work/dry/rounds.jsonl" ] && fail "--dry-run trained"
    run_limited 120 2 "${syn[@]}" --dry-run --set mode=centralized --set run.dir="$work/dry2"
    [ "$code" = 1 ] && grep -q -- "--dry-run: config key \`mode\` is \"centralized\"" "$out" ||
        fail "--dry-run of mode centralized not refused: $code $(cat "$out")"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
test_end
