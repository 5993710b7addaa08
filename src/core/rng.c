#include "fedkd/core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ull

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

fedkd_rng fedkd_rng_stream(uint64_t seed, fedkd_rng_purpose purpose, uint64_t a, uint64_t b)
{
    /* Chain the key parts through the mixer so that nearby keys give
     * unrelated streams. */
    uint64_t key = mix64(seed + GOLDEN_GAMMA);
    key = mix64(key ^ ((uint64_t)purpose * GOLDEN_GAMMA));
    key = mix64(key ^ (a + 0x632BE59BD9B4E019ull));
    key = mix64(key ^ (b + 0x8CB92BA72F3D8DD7ull));
    fedkd_rng rng = {.key = key, .counter = 0, .has_spare_normal = 0, .spare_normal = 0.0};
    return rng;
}

uint64_t fedkd_rng_next_u64(fedkd_rng *rng)
{
    rng->counter++;
    return mix64(rng->key + rng->counter * GOLDEN_GAMMA);
}

double fedkd_rng_uniform(fedkd_rng *rng)
{
    return (double)(fedkd_rng_next_u64(rng) >> 11) * 0x1.0p-53;
}

uint64_t fedkd_rng_below(fedkd_rng *rng, uint64_t n)
{
    /* Rejection keeps every value equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t x;
    do {
        x = fedkd_rng_next_u64(rng);
    } while (x >= limit);
    return x % n;
}

double fedkd_rng_normal(fedkd_rng *rng)
{
    if (rng->has_spare_normal) {
        rng->has_spare_normal = 0;
        return rng->spare_normal;
    }
    double u1;
    do {
        u1 = fedkd_rng_uniform(rng);
    } while (u1 <= 0.0);
    double u2 = fedkd_rng_uniform(rng);
    double radius = sqrt(-2.0 * log(u1));
    double angle = 2.0 * M_PI * u2;
    rng->spare_normal = radius * sin(angle);
    rng->has_spare_normal = 1;
    return radius * cos(angle);
}

double fedkd_rng_gamma(fedkd_rng *rng, double shape)
{
    if (shape < 1.0) {
        /* Boost: Gamma(a) = Gamma(a + 1) * U^(1/a). */
        double u;
        do {
            u = fedkd_rng_uniform(rng);
        } while (u <= 0.0);
        return fedkd_rng_gamma(rng, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = fedkd_rng_normal(rng);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = fedkd_rng_uniform(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

void fedkd_rng_dirichlet(fedkd_rng *rng, double alpha, double *out, size_t k)
{
    double total = 0.0;
    for (size_t i = 0; i < k; i++) {
        out[i] = fedkd_rng_gamma(rng, alpha);
        total += out[i];
    }
    if (total <= 0.0) {
        /* All draws underflowed (tiny alpha): put the mass on one entry. */
        size_t winner = (size_t)fedkd_rng_below(rng, k);
        for (size_t i = 0; i < k; i++) out[i] = (i == winner) ? 1.0 : 0.0;
        return;
    }
    for (size_t i = 0; i < k; i++) out[i] /= total;
}

void fedkd_rng_shuffle_u32(fedkd_rng *rng, uint32_t *items, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)fedkd_rng_below(rng, i);
        uint32_t t = items[i - 1];
        items[i - 1] = items[j];
        items[j] = t;
    }
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int fedkd_rng_subset_u32(fedkd_rng *rng, size_t n, size_t k, uint32_t *out)
{
    if (k >= n) {
        for (size_t i = 0; i < n; i++) out[i] = (uint32_t)i;
        return 0;
    }
    uint32_t *pool = malloc((n ? n : 1) * sizeof *pool);
    if (!pool) return -1;
    for (size_t i = 0; i < n; i++) pool[i] = (uint32_t)i;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)fedkd_rng_below(rng, (uint64_t)(n - i));
        uint32_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
    }
    memcpy(out, pool, k * sizeof *out);
    free(pool);
    qsort(out, k, sizeof *out, compare_u32);
    return 0;
}
