#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/fl/fl.h"

int fedkd_client_host_rank(int client, int comm_size)
{
    if (comm_size <= 1) return 0;
    return 1 + client % (comm_size - 1);
}

int fedkd_hosted_clients(int num_clients, int rank, int comm_size, int *out)
{
    int n = 0;
    for (int c = 0; c < num_clients; c++)
        if (fedkd_client_host_rank(c, comm_size) == rank) out[n++] = c;
    return n;
}

int fedkd_clients_per_round(int num_clients, double per_round)
{
    int m;
    if (per_round <= 1.0)
        m = (int)llround(per_round * (double)num_clients);
    else
        m = (int)llround(per_round);
    if (m < 1) m = 1;
    if (m > num_clients) m = num_clients;
    return m;
}

int fedkd_select_clients(uint64_t seed, int round, int num_clients, double per_round,
                         int *selected)
{
    int m = fedkd_clients_per_round(num_clients, per_round);
    if (m == num_clients) {
        for (int i = 0; i < num_clients; i++) selected[i] = i;
        return m;
    }
    /* Partial Fisher-Yates: the first m of a seeded permutation. */
    uint32_t *picked = malloc((size_t)m * sizeof *picked);
    if (!picked) return -1;
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_SAMPLE_CLIENTS, (uint64_t)round, 0);
    int failed = fedkd_rng_subset_u32(&rng, (size_t)num_clients, (size_t)m, picked);
    for (int i = 0; i < m && !failed; i++) selected[i] = (int)picked[i];
    free(picked);
    if (failed) return -1;
    return m;
}

/* llround(y) for |y| < 2^63, without the library call: y plus the double
 * just below one half, with y's sign, truncated. The sum rounds to an
 * integer boundary exactly when y's fraction is at least a half (0.5 +
 * 0.49999999999999994 is 1 - 2^-54, which rounds to 1; anything below 0.5
 * stays below 1), and from 2^52 on y has no fraction to round. Two
 * operations and a conversion per value instead of a truncation, a
 * conversion back and two comparisons: the accumulation below runs a third
 * faster. tests/fl/test_fl_equivalence.c compares it with llround on every
 * halfway case and its neighbours in every binade. */
static inline int64_t round_half_away(double y)
{
    return (int64_t)(y + copysign(0.49999999999999994, y));
}

/* The pass below runs once per client and round over the whole parameter
 * vector (with 1000 clients a round, a fifth of a client rank's time).
 * Clones for wider registers: with AVX-512 (x86-64-v4) the conversion to
 * int64 is one instruction per 8 values instead of a scalar loop. Every
 * clone does the same IEEE operations in the same order (no contraction in
 * ISO C), so all give the same integers. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ACCUMULATE_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define ACCUMULATE_CLONES
#endif

/* y, or +0 when !ok (NaN too), without a branch: a conditional here keeps
 * GCC from vectorising the loop. */
static inline double zero_unless(double y, int ok)
{
    uint64_t bits;
    memcpy(&bits, &y, sizeof bits);
    bits &= -(uint64_t)ok;
    memcpy(&y, &bits, sizeof y);
    return y;
}

/* accumulator[i] += fixed(weight * (values[i] - minus[i])) (minus
 * optional), in one pass; returns 1 when some weight * (values[i] -
 * minus[i]) is not finite or beyond FEDKD_FIXED_LIMIT, whose term is then
 * taken as 0. `scaled` is weight * FEDKD_FIXED_SCALE: scaling by a power of
 * two is exact, so scaled * x is the bits of (weight * x) * 2^40 and the
 * limit compares the same way scaled. Branch-free, so that it vectorises;
 * the same call with -scaled takes back exactly what this one added
 * (round_half_away is odd, the test symmetric). */
ACCUMULATE_CLONES
static int add_fixed(int64_t *restrict accumulator, const float *restrict values,
                     const float *restrict minus, size_t n, double scaled)
{
    const double limit = FEDKD_FIXED_LIMIT * FEDKD_FIXED_SCALE;
    int bad = 0;
    if (minus)
        for (size_t i = 0; i < n; i++) {
            double y = scaled * (double)(values[i] - minus[i]);
            int ok = fabs(y) <= limit;
            bad |= !ok;
            accumulator[i] += round_half_away(zero_unless(y, ok));
        }
    else
        for (size_t i = 0; i < n; i++) {
            double y = scaled * (double)values[i];
            int ok = fabs(y) <= limit;
            bad |= !ok;
            accumulator[i] += round_half_away(zero_unless(y, ok));
        }
    return bad;
}

/* accumulator[i] += fixed(weight * (values[i] - minus[i])), minus optional.
 * The difference is taken in float, as a stored delta would be. A value out
 * of range fails the call and leaves the accumulator as it was. */
static fedkd_status accumulate(int64_t *accumulator, const float *values, const float *minus,
                               size_t n, double weight)
{
    double scaled = weight * FEDKD_FIXED_SCALE;
    if (!add_fixed(accumulator, values, minus, n, scaled)) return FEDKD_OK;
    add_fixed(accumulator, values, minus, n, -scaled);
    for (size_t i = 0; i < n; i++) {
        float x = minus ? values[i] - minus[i] : values[i];
        if (!(fabs(weight * (double)x) <= FEDKD_FIXED_LIMIT))
            return FEDKD_FAIL(FEDKD_ERR_NUMERIC,
                              "aggregation: update value %g at parameter %zu is not finite "
                              "or exceeds %g; lower local.lr",
                              (double)x, i, FEDKD_FIXED_LIMIT);
    }
    return FEDKD_FAIL(FEDKD_ERR_NUMERIC, "aggregation: weight %g is out of range", weight);
}

fedkd_status fedkd_fixed_accumulate(int64_t *accumulator, const float *values, size_t n,
                                    double weight)
{
    return accumulate(accumulator, values, NULL, n, weight);
}

fedkd_status fedkd_fixed_accumulate_delta(int64_t *accumulator, const float *after,
                                          const float *before, size_t n, double weight)
{
    return accumulate(accumulator, after, before, n, weight);
}
