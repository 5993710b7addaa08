/* Seeded mutations of a valid input, for the fuzz suite (a test tool, not
 * part of the simulator).
 *
 *   fuzz_mutate binary SEED IN OUT   bit flips, interesting bytes and
 *                                    32/64-bit values, truncation, a
 *                                    copied block, in an HDF5 / IDX file
 *   fuzz_mutate text SEED IN OUT     the same on text plus JSON-aware edits:
 *                                    numbers replaced by extreme values,
 *                                    tokens deleted or repeated
 *   fuzz_mutate value SEED           prints one hostile --set value
 *
 * A gzipped input (magic 1f 8b) is inflated, mutated and deflated again
 * half of the time, so that the reader behind zlib is reached too; the other
 * half mutates the compressed bytes. The same SEED always gives the same
 * output. Exits 0, or 1 with a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

static uint64_t rng_state;

/* splitmix64: small, seedable, good enough to pick mutations. */
static uint64_t next_random(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(size_t n) { return n ? (size_t)(next_random() % n) : 0; }

typedef struct buffer {
    unsigned char *data;
    size_t size, capacity;
} buffer;

static int reserve(buffer *b, size_t size)
{
    if (size <= b->capacity) return 1;
    size_t capacity = size * 2 + 64;
    unsigned char *grown = realloc(b->data, capacity);
    if (!grown) return 0;
    b->data = grown;
    b->capacity = capacity;
    return 1;
}

static int read_file(const char *path, buffer *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (!reserve(b, b->size + got)) break;
        memcpy(b->data + b->size, chunk, got);
        b->size += got;
    }
    int ok = !ferror(f);
    fclose(f);
    return ok;
}

static int write_file(const char *path, const unsigned char *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

static const uint64_t interesting[] = {
    0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000,
    0xffffffff, 0x100000000ull, 0x4000000000000000ull, 0x7fffffffffffffffull,
    0x8000000000000000ull, 0xffffffffffffffffull};
#define NUM_INTERESTING (sizeof interesting / sizeof interesting[0])

static void put_value(buffer *b, size_t at, uint64_t value, int bytes, int big_endian)
{
    for (int i = 0; i < bytes && at + (size_t)i < b->size; i++) {
        int shift = big_endian ? 8 * (bytes - 1 - i) : 8 * i;
        b->data[at + (size_t)i] = (unsigned char)(value >> shift);
    }
}

/* One binary mutation. Most land in the first 4 KiB, where HDF5 keeps its
 * superblock and object headers and IDX its header. */
static void mutate_binary_once(buffer *b)
{
    if (b->size == 0) return;
    size_t head = b->size < 4096 ? b->size : 4096;
    size_t at = below(4) ? below(head) : below(b->size);
    switch (below(7)) {
    case 0: b->data[at] ^= (unsigned char)(1u << below(8)); break;
    case 1: b->data[at] = (unsigned char)interesting[below(6)]; break;
    case 2: put_value(b, at, interesting[below(NUM_INTERESTING)], 4, (int)below(2)); break;
    case 3: put_value(b, at, interesting[below(NUM_INTERESTING)], 8, (int)below(2)); break;
    case 4: b->size = at + 1; break; /* truncate */
    case 5: { /* copy a block over another place */
        size_t from = below(b->size), length = 1 + below(64);
        if (from + length > b->size) length = b->size - from;
        if (at + length > b->size) length = b->size - at;
        memmove(b->data + at, b->data + from, length);
        break;
    }
    default: b->data[at] = (unsigned char)next_random(); break;
    }
}

static const char *const hostile_numbers[] = {
    "0", "-1", "1e308", "-1e308", "9.2e18", "4294967296", "2147483648", "-2147483649",
    "1e-320", "0.5", "65536", "3000000", "18446744073709551616", "1e400", "NaN", "-0",
    "99999999999999999999", "7", "2", "1"};
#define NUM_HOSTILE (sizeof hostile_numbers / sizeof hostile_numbers[0])

static const char *const hostile_tokens[] = {
    "\"\"", "null", "[]", "{}", "true", "\"x\"", "[[[[[[[[", "\"\\u0000\"", ",", ":", "}",
    "\"mlp\"", "[{\"type\":\"dense\",\"units\":3000000}]", "\"../../../../etc/passwd\"",
    "{\"type\":\"conv2d\",\"filters\":0,\"kernel\":99}"};
#define NUM_TOKENS (sizeof hostile_tokens / sizeof hostile_tokens[0])

static int is_number_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Replaces b[at, at + length) by text. */
static int splice(buffer *b, size_t at, size_t length, const char *text)
{
    size_t n = strlen(text);
    if (!reserve(b, b->size - length + n + 1)) return 0;
    memmove(b->data + at + n, b->data + at + length, b->size - at - length);
    memcpy(b->data + at, text, n);
    b->size = b->size - length + n;
    return 1;
}

static void mutate_text_once(buffer *b)
{
    if (b->size == 0) {
        splice(b, 0, 0, hostile_tokens[below(NUM_TOKENS)]);
        return;
    }
    size_t at = below(b->size);
    switch (below(6)) {
    case 0: case 1: { /* a number, replaced */
        size_t start = at;
        while (start < b->size && !(b->data[start] >= '0' && b->data[start] <= '9')) start++;
        if (start == b->size) start = at;
        while (start > 0 && is_number_char(b->data[start - 1])) start--;
        size_t end = start;
        while (end < b->size && is_number_char(b->data[end])) end++;
        splice(b, start, end - start, hostile_numbers[below(NUM_HOSTILE)]);
        break;
    }
    case 2: /* a value, replaced by a hostile token */
        while (at < b->size && b->data[at] != ':') at++;
        if (at < b->size) {
            size_t end = at + 1;
            while (end < b->size && b->data[end] != ',' && b->data[end] != '}') end++;
            splice(b, at + 1, end - at - 1, hostile_tokens[below(NUM_TOKENS)]);
        }
        break;
    case 3: { /* delete a span */
        size_t length = 1 + below(16);
        if (at + length > b->size) length = b->size - at;
        splice(b, at, length, "");
        break;
    }
    case 4: { /* repeat a span */
        size_t length = 1 + below(32);
        if (at + length > b->size) length = b->size - at;
        char copy[40];
        memcpy(copy, b->data + at, length);
        copy[length] = '\0';
        splice(b, at, 0, copy);
        break;
    }
    default: mutate_binary_once(b); break;
    }
}

static int gunzip(const buffer *in, buffer *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return 0;
    z.next_in = in->data;
    z.avail_in = (uInt)in->size;
    int code = Z_OK;
    while (code == Z_OK) {
        if (!reserve(out, out->size + 65536)) break;
        z.next_out = out->data + out->size;
        z.avail_out = 65536;
        code = inflate(&z, Z_NO_FLUSH);
        out->size = (size_t)(z.next_out - out->data);
    }
    inflateEnd(&z);
    return code == Z_STREAM_END;
}

static int gzip_write(const char *path, const buffer *b)
{
    gzFile gz = gzopen(path, "wb6");
    if (!gz) return 0;
    int ok = b->size == 0 || gzwrite(gz, b->data, (unsigned)b->size) == (int)b->size;
    return gzclose(gz) == Z_OK && ok;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "value") == 0) {
        rng_state = strtoull(argv[2], NULL, 10) * 0x2545f4914f6cdd1dull;
        if (below(3)) printf("%s\n", hostile_numbers[below(NUM_HOSTILE)]);
        else printf("%s\n", hostile_tokens[below(NUM_TOKENS)]);
        return 0;
    }
    if (argc != 5 || (strcmp(argv[1], "binary") != 0 && strcmp(argv[1], "text") != 0)) {
        fprintf(stderr, "usage: fuzz_mutate binary|text SEED IN OUT | value SEED\n");
        return 2;
    }
    int text = strcmp(argv[1], "text") == 0;
    rng_state = strtoull(argv[2], NULL, 10) * 0x2545f4914f6cdd1dull + (uint64_t)text;
    buffer in = {0}, plain = {0};
    if (!read_file(argv[3], &in)) {
        fprintf(stderr, "fuzz_mutate: cannot read %s\n", argv[3]);
        return 1;
    }
    int gzipped = in.size > 2 && in.data[0] == 0x1f && in.data[1] == 0x8b && below(2);
    buffer *b = &in;
    if (gzipped && gunzip(&in, &plain)) b = &plain;
    else gzipped = 0;
    size_t rounds = 1 + below(4);
    for (size_t i = 0; i < rounds; i++) {
        if (text) mutate_text_once(b);
        else mutate_binary_once(b);
    }
    int ok = gzipped ? gzip_write(argv[4], b) : write_file(argv[4], b->data, b->size);
    free(in.data);
    free(plain.data);
    if (!ok) {
        fprintf(stderr, "fuzz_mutate: cannot write %s\n", argv[4]);
        return 1;
    }
    return 0;
}
