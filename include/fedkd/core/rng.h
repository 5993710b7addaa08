/* Counter-based random streams.
 *
 * A stream is keyed by (seed, purpose, a, b), for example
 * (seed, FEDKD_RNG_LOCAL_SHUFFLE, client, round). Its i-th output depends only
 * on the key and i, so results never depend on which rank drew what before.
 * The generator is SplitMix64's finaliser applied to key + i * golden ratio:
 * cheap, stateless and good enough for shuffles and initialisation. */
#ifndef FEDKD_RNG_H
#define FEDKD_RNG_H

#include <stddef.h>
#include <stdint.h>

/* What a stream is for. Values are part of the results' definition: never
 * renumber, only append. */
typedef enum fedkd_rng_purpose {
    FEDKD_RNG_INIT = 1,          /* weight initialisation: a = model id */
    FEDKD_RNG_PARTITION = 2,     /* partitioning the training set */
    FEDKD_RNG_SAMPLE_CLIENTS = 3,/* per-round client selection: a = round */
    FEDKD_RNG_LOCAL_SHUFFLE = 4, /* minibatch order: a = client, b = round */
    FEDKD_RNG_SYNTHETIC = 5,     /* synthetic dataset generation */
    FEDKD_RNG_FEATURE_NOISE = 6, /* feature-noise partition: a = client */
    FEDKD_RNG_PUBLIC_SPLIT = 7,  /* public / proxy / validation split */
    FEDKD_RNG_AUGMENT = 8,       /* data augmentation: a = client, b = round-epoch */
    FEDKD_RNG_NETWORK = 9,       /* simulated devices and links: a = client, b = quantity */
    FEDKD_RNG_DROPOUT = 10,      /* simulated client failures: a = round, b = client */
    FEDKD_RNG_TEST = 100         /* tests */
} fedkd_rng_purpose;

typedef struct fedkd_rng {
    uint64_t key;
    uint64_t counter;
    /* A cached second normal from Box-Muller. */
    int has_spare_normal;
    double spare_normal;
} fedkd_rng;

fedkd_rng fedkd_rng_stream(uint64_t seed, fedkd_rng_purpose purpose, uint64_t a, uint64_t b);

uint64_t fedkd_rng_next_u64(fedkd_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double fedkd_rng_uniform(fedkd_rng *rng);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t fedkd_rng_below(fedkd_rng *rng, uint64_t n);
/* Standard normal (Box-Muller). */
double fedkd_rng_normal(fedkd_rng *rng);
/* Gamma(shape, 1), shape > 0 (Marsaglia and Tsang). */
double fedkd_rng_gamma(fedkd_rng *rng, double shape);
/* Fills out[0..k) with a draw from Dirichlet(alpha, ..., alpha). */
void fedkd_rng_dirichlet(fedkd_rng *rng, double alpha, double *out, size_t k);
/* A uniform k-subset of [0, n) into out[0..k), ascending: the first k steps
 * of a forward Fisher-Yates shuffle of 0..n-1 (no draw when k == n).
 * Returns 0, or -1 when out of memory (k <= n). */
int fedkd_rng_subset_u32(fedkd_rng *rng, size_t n, size_t k, uint32_t *out);
/* Fisher-Yates shuffle of an index array. */
void fedkd_rng_shuffle_u32(fedkd_rng *rng, uint32_t *items, size_t n);

#endif
