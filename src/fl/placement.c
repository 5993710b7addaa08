#include <math.h>
#include <stdlib.h>

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

/* llround(y) for |y| < 2^63, without the library call: truncate, then step
 * away from zero when the (exactly computed) fraction is at least a half.
 * The same integer as llround for every such y: below 2^53 the truncated
 * value converts back exactly, above it y has no fraction. */
static inline int64_t round_half_away(double y)
{
    int64_t truncated = (int64_t)y;
    double fraction = y - (double)truncated;
    return truncated + (fraction >= 0.5) - (fraction <= -0.5);
}

/* The passes below run once per client and round over the whole parameter
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

/* 1 when some weight * (values[i] - minus[i]) (minus optional) is not
 * finite or beyond FEDKD_FIXED_LIMIT. Branch-free. */
ACCUMULATE_CLONES
static int out_of_range(const float *restrict values, const float *restrict minus, size_t n,
                        double weight)
{
    int bad = 0;
    if (minus)
        for (size_t i = 0; i < n; i++)
            bad |= !(fabs(weight * (double)(values[i] - minus[i])) <= FEDKD_FIXED_LIMIT);
    else
        for (size_t i = 0; i < n; i++)
            bad |= !(fabs(weight * (double)values[i]) <= FEDKD_FIXED_LIMIT);
    return bad;
}

ACCUMULATE_CLONES
static void add_fixed(int64_t *restrict accumulator, const float *restrict values,
                      const float *restrict minus, size_t n, double weight)
{
    if (minus)
        for (size_t i = 0; i < n; i++) {
            float x = values[i] - minus[i];
            double v = weight * (double)x;
            accumulator[i] += round_half_away(v * FEDKD_FIXED_SCALE);
        }
    else
        for (size_t i = 0; i < n; i++) {
            double v = weight * (double)values[i];
            accumulator[i] += round_half_away(v * FEDKD_FIXED_SCALE);
        }
}

/* accumulator[i] += fixed(weight * (values[i] - minus[i])), minus optional.
 * The difference is taken in float, as a stored delta would be. The range
 * check is a separate pass, so that the sum has no branch. */
static fedkd_status accumulate(int64_t *accumulator, const float *values, const float *minus,
                               size_t n, double weight)
{
    if (out_of_range(values, minus, n, weight))
        for (size_t i = 0; i < n; i++) {
            float x = minus ? values[i] - minus[i] : values[i];
            if (!(fabs(weight * (double)x) <= FEDKD_FIXED_LIMIT))
                return FEDKD_FAIL(FEDKD_ERR_NUMERIC,
                                  "aggregation: update value %g at parameter %zu is not finite "
                                  "or exceeds %g; lower local.lr",
                                  (double)x, i, FEDKD_FIXED_LIMIT);
        }
    add_fixed(accumulator, values, minus, n, weight);
    return FEDKD_OK;
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
