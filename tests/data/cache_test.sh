#!/usr/bin/env bash
# The data cache (config key data.cache_dir, src/data/idx_cache.h): runs
# give the same final model with and without it, at any number of ranks; a
# warm cache is read by every rank (no training rows move between ranks);
# a cache with a corrupt row or header, or a stale one, is not used, the run
# still gives the same model and the cache is written anew; a cache
# directory that cannot be written does not fail the run; a bad value of the
# key is refused; a soft-label algorithm, whose every host loads the public
# set, gives one model at 3 and 4 ranks. Usage: cache_test.sh MPIEXEC FEDKD_SIM FASHION_MNIST_DIR
set -uo pipefail
mpiexec=$1
sim=$2
fashion=$3
case_name=data-cache
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
test_begin cache

if [ ! -f "$fashion/train-images-idx3-ubyte.gz" ]; then
    echo "Fashion-MNIST not installed in $fashion: skipped"
    exit 77
fi
# The first rows of Fashion-MNIST as gzipped IDX files of their own (3000
# training and 1000 test images, so that the test stays quick under the
# sanitizers); the test may change their time stamps.
be32() { # be32 N: N as 4 big-endian bytes
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) \
        $(($1 >> 8 & 255)) $(($1 & 255)))"
}
subset() { # subset NAME ROWS: the first ROWS records of Fashion-MNIST's NAME
    local name=$1 rows=$2 header=8 record=1
    case $name in *images*) header=16 record=784 ;; esac
    {
        gzip -dc "$fashion/$name.gz" | head -c 4
        be32 "$rows"
        [ $header = 16 ] && { be32 28; be32 28; }
        gzip -dc "$fashion/$name.gz" | tail -c +$((header + 1)) | head -c $((rows * record))
    } | gzip -1 >"$work/fm/$name.gz"
}
mkdir -p "$work/fm"
subset train-images-idx3-ubyte 3000
subset train-labels-idx1-ubyte 3000
subset t10k-images-idx3-ubyte 1000
subset t10k-labels-idx1-ubyte 1000
cache="$work/cache"
# One local step per client: the run's time is its start-up.
common=(--quiet --set mode=federated --set rounds=1 --set clients.count=3
        --set local.steps=1 --set checkpoint.every=0 --set data.dir="$work/fm")

field() { # field NAME SUMMARY
    sed -n "s/.*\"$1\":[[:space:]]*\"\{0,1\}\([^\",]*\)\"\{0,1\}.*/\1/p" "$2" | head -1
}

n=0
# run LABEL NP CACHE_DIR: sets checksum and moved (wire_bytes_setup)
run() {
    local label=$1 np=$2 dir="$work/run$((n += 1))"
    checksum=""
    moved=""
    if ! test_run 120 "$sim" "$np" "$dir" "${common[@]}" "${@:4}" --set data.cache_dir="$3"; then
        fail "[$label] exited non-zero: $(cat "$dir.err")"
        return
    fi
    checksum=$(field params_checksum "$dir/summary.json")
    moved=$(field wire_bytes_setup "$dir/summary.json")
    last_err="$dir.err"
}

run "no cache" 3 ""
reference=$checksum
[ -n "$reference" ] || fail "no params_checksum in the reference run"
[ "${moved:-0}" -gt 0 ] || fail "[no cache] the rows were not sent between ranks (wire_bytes_setup $moved)"

run "cache written" 3 "$cache"
[ "$checksum" = "$reference" ] || fail "[cache written] checksum $checksum, expected $reference"
file=$(ls "$cache"/train-images-idx3-ubyte-*.cache 2>/dev/null | head -1)
if [ -z "$file" ]; then
    fail "no training cache written in $cache: $(ls "$cache" 2>&1)"
    test_end
fi
ls "$cache"/t10k-images-idx3-ubyte-*.cache >/dev/null 2>&1 || fail "no test set cache written"
cp "$file" "$work/good.cache"

run "cache read, 4 ranks" 4 "$cache"
[ "$checksum" = "$reference" ] || fail "[cache read] checksum $checksum, expected $reference"
[ "$moved" = 0 ] || fail "[cache read] wire_bytes_setup $moved: the ranks did not read the cache"

# corrupt_row LABEL CACHE_FILE GOOD_COPY: one byte of the file's last row
# flipped; the run reads the gzip file instead, warns and rewrites the cache.
corrupt_row() {
    local label=$1 cache_file=$2 good=$3 size
    size=$(stat -c %s "$cache_file")
    printf '\xff' | dd of="$cache_file" bs=1 seek=$((size - 100)) conv=notrunc status=none
    run "$label" 3 "$cache"
    [ "$checksum" = "$reference" ] || fail "[$label] checksum $checksum, expected $reference"
    grep -q "does not match its CRC-32C" "$last_err" || fail "[$label] no warning: $(cat "$last_err")"
    cmp -s "$cache_file" "$good" || fail "[$label] the cache was not written anew"
}
corrupt_row "corrupt row" "$file" "$work/good.cache"
# The same for the test set's cache (read by the server alone).
test_file=$(ls "$cache"/t10k-images-idx3-ubyte-*.cache | head -1)
cp "$test_file" "$work/good-test.cache"
corrupt_row "corrupt test row" "$test_file" "$work/good-test.cache"

# The header's row count changed: not trusted, written anew.
printf '\x07' | dd of="$file" bs=1 seek=17 conv=notrunc status=none
run "corrupt header" 3 "$cache"
[ "$checksum" = "$reference" ] || fail "[corrupt header] checksum $checksum, expected $reference"
[ "${moved:-0}" -gt 0 ] || fail "[corrupt header] the corrupt cache was used"
cmp -s "$file" "$work/good.cache" || fail "[corrupt header] the cache was not written anew"

# A newer training file: the cache is stale.
touch -d '+1 minute' "$work/fm/train-images-idx3-ubyte.gz"
run "stale cache" 2 "$cache"
[ "$checksum" = "$reference" ] || fail "[stale cache] checksum $checksum, expected $reference"
[ "${moved:-0}" -gt 0 ] || fail "[stale cache] the stale cache was used"
cmp -s "$file" "$work/good.cache" && fail "[stale cache] the cache was not written anew"

# A directory nobody can write (not even root): a warning, the same model.
run "read-only cache directory" 3 /proc/fedkd-sim-cache
[ "$checksum" = "$reference" ] || fail "[read-only] checksum $checksum, expected $reference"
grep -q "data.cache_dir" "$last_err" || fail "[read-only] no warning: $(cat "$last_err")"

# Every host of a soft-label algorithm loads the public set, held out of
# the training file: the reader sends the same rows to several ranks (it
# overran its send buffer before). With and without the cache, at 3 and 4
# ranks, the same model.
softlabel=(--set algorithm=fedmd --set public.source=train-holdout --set public.size=1000)
run "fedmd, no cache" 3 "" "${softlabel[@]}"
fedmd_reference=$checksum
[ -n "$fedmd_reference" ] || fail "[fedmd, no cache] no params_checksum"
[ "${moved:-0}" -gt 0 ] || fail "[fedmd, no cache] the rows were not sent between ranks"
run "fedmd, cache" 4 "$cache" "${softlabel[@]}"
[ "$checksum" = "$fedmd_reference" ] || fail "[fedmd, cache] checksum $checksum, expected $fedmd_reference"

long=$(printf 'd%.0s' $(seq 1 600))
test_expect_error 2 "config key \`data.cache_dir\`: expected a string of at most 511" \
    "${common[@]}" --set data.cache_dir="/tmp/$long"
test_end
