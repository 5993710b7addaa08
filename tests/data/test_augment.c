/* Augmentation (include/fedkd/data/augment.h): properties and a hand case.
 * - flipping twice is the identity, and a flip mirrors each row;
 * - a crop with padding 0, or at the centre of the padded image, is the
 *   identity; a shifted crop moves the pixels and fills zeros (by hand);
 * - a batch's draws depend only on the stream key and the sample's place:
 *   the same key gives the same batch, split into two calls or not; another
 *   key gives another batch; every sample takes the same number of draws. */
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/rng.h"
#include "fedkd/data/augment.h"
#include "../test_util.h"

#define CHANNELS 3
#define SIDE 6
#define FLOATS (CHANNELS * SIDE * SIDE)

static void fill(float *sample, int seed)
{
    for (int i = 0; i < FLOATS; i++) sample[i] = (float)((i * 37 + seed * 11) % 101) - 50.0f;
}

int main(void)
{
    fedkd_shape shape = {CHANNELS, SIDE, SIDE};
    float a[FLOATS], b[FLOATS], scratch[FLOATS];
    fill(a, 1);
    memcpy(b, a, sizeof a);
    fedkd_augment_flip(b, shape);
    CHECK(memcmp(a, b, sizeof a) != 0, "a flip changed nothing");
    CHECK(b[2 * SIDE * SIDE + 3 * SIDE + 0] == a[2 * SIDE * SIDE + 3 * SIDE + SIDE - 1],
          "channel 2, row 3: first pixel is the last one mirrored");
    fedkd_augment_flip(b, shape);
    CHECK(memcmp(a, b, sizeof a) == 0, "flip twice is not the identity");

    memcpy(b, a, sizeof a);
    fedkd_augment_crop(b, shape, 0, 0, 0, scratch);
    CHECK(memcmp(a, b, sizeof a) == 0, "a crop with padding 0 changed the sample");
    fedkd_augment_crop(b, shape, 2, 2, 2, scratch);
    CHECK(memcmp(a, b, sizeof a) == 0, "the centre crop of padding 2 changed the sample");

    /* 1 x 3 x 3 image 1..9, padding 1, crop corner (0, 2): out[y][x] =
     * in[y - 1][x + 1]: row 0 is padding, then (2 3 0), (5 6 0). */
    fedkd_shape small = {1, 3, 3};
    float img[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, small_scratch[9];
    const float want[9] = {0, 0, 0, 2, 3, 0, 5, 6, 0};
    fedkd_augment_crop(img, small, 1, 0, 2, small_scratch);
    CHECK(memcmp(img, want, sizeof want) == 0, "shifted crop: %g %g %g / %g %g %g / %g %g %g",
          (double)img[0], (double)img[1], (double)img[2], (double)img[3], (double)img[4],
          (double)img[5], (double)img[6], (double)img[7], (double)img[8]);

    /* Batches: 8 samples in one call, or 3 then 5, from the same key. */
    enum { N = 8 };
    fedkd_augment_settings settings = {.padding = 2, .flip = 1};
    float *whole = malloc(N * FLOATS * sizeof(float)), *split = malloc(N * FLOATS * sizeof(float));
    float *other = malloc(N * FLOATS * sizeof(float)), *plain = malloc(N * FLOATS * sizeof(float));
    for (int i = 0; i < N; i++) fill(plain + i * FLOATS, i);
    memcpy(whole, plain, N * FLOATS * sizeof(float));
    memcpy(split, plain, N * FLOATS * sizeof(float));
    memcpy(other, plain, N * FLOATS * sizeof(float));
    fedkd_rng r1 = fedkd_rng_stream(5, FEDKD_RNG_AUGMENT, 3, 7);
    fedkd_augment_batch(&settings, shape, whole, N, &r1, scratch);
    fedkd_rng r2 = fedkd_rng_stream(5, FEDKD_RNG_AUGMENT, 3, 7);
    fedkd_augment_batch(&settings, shape, split, 3, &r2, scratch);
    fedkd_augment_batch(&settings, shape, split + 3 * FLOATS, N - 3, &r2, scratch);
    CHECK(memcmp(whole, split, N * FLOATS * sizeof(float)) == 0,
          "the same stream gave another batch when split in two calls");
    CHECK(r1.counter == 3 * N && r2.counter == 3 * N, "draws per sample not fixed: %llu, %llu",
          (unsigned long long)r1.counter, (unsigned long long)r2.counter);
    fedkd_rng r3 = fedkd_rng_stream(5, FEDKD_RNG_AUGMENT, 4, 7);
    fedkd_augment_batch(&settings, shape, other, N, &r3, scratch);
    CHECK(memcmp(whole, other, N * FLOATS * sizeof(float)) != 0, "another client's key gave the same batch");
    CHECK(memcmp(whole, plain, N * FLOATS * sizeof(float)) != 0, "the batch was not augmented");
    free(whole);
    free(split);
    free(other);
    free(plain);
    return test_finish("test_augment");
}
