/* fedkd_alloc: every block zeroed and 64-byte aligned, below, inside and
 * above the sizes cut from huge-page chunks (256 KiB .. 2 MiB); a freed
 * chunked block serves the next block of its length, zeroed again; a
 * thousand made-and-freed rounds of a model-like set of blocks reuse the
 * same memory; a client rank's mlp blocks share three huge-page chunks; a
 * chunk whose blocks are all freed is no longer resident. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "fedkd/core/core.h"
#include "test_util.h"

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* The blocks of 256 KiB .. 2 MiB a client rank of the mlp makes, in its
 * order (model parameters, gradients, activations and their gradients,
 * momentum, the global weights, the sums' accumulator): 5.4 MiB, which fit
 * in three 2 MiB chunks, and must (each chunk lost is a rank's peak memory).
 * First in the test, on fresh chunks. */
static void check_packing(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    const size_t mlp[] = {796840, 796840, 408064, 401408, 796840, 796840, 1593712};
    const size_t parts = sizeof mlp / sizeof mlp[0];
    unsigned char *held[sizeof mlp / sizeof mlp[0]];
    uintptr_t regions[sizeof mlp / sizeof mlp[0]];
    size_t distinct = 0;
    for (size_t i = 0; i < parts; i++) {
        held[i] = fedkd_alloc(mlp[i]);
        CHECK(held[i] != NULL, "%zu bytes: NULL", mlp[i]);
        if (!held[i]) return;
        uintptr_t region = (uintptr_t)held[i] >> 21;
        size_t r = 0;
        while (r < distinct && regions[r] != region) r++;
        if (r == distinct) regions[distinct++] = region;
    }
    CHECK(distinct == 3, "a client rank's mlp blocks took %zu chunks, expected 3", distinct);
    for (size_t i = 0; i < parts; i++) memset(held[i], 0x5a, mlp[i]);
    /* All freed: the chunks are dropped (the last block's, alone in its
     * chunk, too), and come back zeroed. */
    unsigned char *last = held[parts - 1];
    for (size_t i = parts; i-- > 0;) fedkd_free(held[i]);
    unsigned char resident[1] = {1};
    CHECK(mincore(last, 4096, resident) == 0 && !(resident[0] & 1),
          "a chunk with no block in use is still resident");
    unsigned char *again = fedkd_alloc(mlp[parts - 1]);
    CHECK(again && all_zero(again, mlp[parts - 1]), "a block of a dropped chunk is not zero");
    fedkd_free(again);
#endif
}

int main(void)
{
    check_packing();
    const size_t sizes[] = {1, 100, 4096, 200000, 262143, 262144, 262145, 796840, 1593712,
                            (2u << 20) - 1, 2u << 20, 3u << 20};
    const size_t count = sizeof sizes / sizeof sizes[0];
    unsigned char *blocks[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < count; i++) {
        blocks[i] = fedkd_alloc(sizes[i]);
        CHECK(blocks[i] != NULL, "%zu bytes: NULL", sizes[i]);
        if (!blocks[i]) return test_finish("test_alloc");
        CHECK(((uintptr_t)blocks[i] & 63u) == 0, "%zu bytes: %p not 64-byte aligned", sizes[i],
              (void *)blocks[i]);
        CHECK(all_zero(blocks[i], sizes[i]), "%zu bytes: not zero", sizes[i]);
        memset(blocks[i], 0xa5, sizes[i]);
    }
    /* Blocks do not overlap: each still holds its own pattern after all
     * were written, the first and last byte checked. */
    for (size_t i = 0; i < count; i++) {
        blocks[i][sizes[i] - 1] = (unsigned char)(i + 100);
        blocks[i][0] = (unsigned char)i;
    }
    for (size_t i = 0; i < count; i++)
        CHECK(blocks[i][0] == (unsigned char)i &&
                  (sizes[i] == 1 || blocks[i][sizes[i] - 1] == (unsigned char)(i + 100)),
              "%zu bytes: overwritten by another block", sizes[i]);
    /* Freed and asked for again: zeroed. */
    for (size_t i = 0; i < count; i++) fedkd_free(blocks[i]);
    for (size_t i = 0; i < count; i++) {
        unsigned char *again = fedkd_alloc(sizes[i]);
        CHECK(again && all_zero(again, sizes[i]), "%zu bytes again: not zero", sizes[i]);
        fedkd_free(again);
    }
#if !defined(__SANITIZE_ADDRESS__)
    /* A chunked block is kept for the next of its length. */
    unsigned char *first = fedkd_alloc(796840);
    fedkd_free(first);
    unsigned char *second = fedkd_alloc(796840);
    CHECK(second == first, "a freed 796840-byte block was not reused (%p, then %p)",
          (void *)first, (void *)second);
    fedkd_free(second);
#endif
    /* Rounds of a model's blocks made and freed: the addresses settle. */
    const size_t model[] = {796840, 796840, 408064, 401408, 1593712, 300000};
    const size_t parts = sizeof model / sizeof model[0];
    unsigned char *seen[sizeof model / sizeof model[0]] = {0};
    int moved = 0;
    for (int round = 0; round < 1000; round++) {
        unsigned char *held[sizeof model / sizeof model[0]];
        for (size_t i = 0; i < parts; i++) {
            held[i] = fedkd_alloc(model[i]);
            if (round == 1) seen[i] = held[i];
            if (round > 1) moved += held[i] != seen[i];
            if (held[i]) held[i][model[i] - 1] = 1;
        }
        for (size_t i = parts; i-- > 0;) fedkd_free(held[i]);
    }
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(moved == 0, "%d blocks came from new memory after the second round", moved);
#else
    (void)moved;
#endif
    return test_finish("test_alloc");
}
