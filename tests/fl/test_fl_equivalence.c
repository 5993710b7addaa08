/* Properties of the federation that hold exactly or to a stated tolerance:
 * - FedAvg with one client and one local epoch equals centralized training
 *   for one epoch (same data order, same optimizer, one round);
 * - aggregating K identical client updates returns that update, and the
 *   fixed-point rounding is llround's;
 * - client sampling picks the configured number of distinct clients and
 *   placement is a fixed round-robin.
 * Runs as a single MPI process. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/core/core.h"
#include "fedkd/experiments/experiments.h"
#include "../test_util.h"

static const char *common[] = {
    "data.name=synthetic", "data.synthetic_train=600", "data.synthetic_test=200",
    "model=[{\"type\":\"dense\",\"units\":16},{\"type\":\"relu\"},{\"type\":\"dense\",\"units\":4}]",
    "local.epochs=1", "local.batch_size=32", "local.lr=0.05", "rounds=1",
    "clients.count=1", "clients.per_round=1", "partition.scheme=iid",
    "run.dir=/tmp/fedkd-test-equivalence",
};

static int run_mode(const char *mode, fedkd_run_result *result)
{
    const char *overrides[16];
    int n = 0;
    for (size_t i = 0; i < sizeof common / sizeof *common; i++) overrides[n++] = common[i];
    char mode_override[64];
    snprintf(mode_override, sizeof mode_override, "mode=%s", mode);
    overrides[n++] = mode_override;
    fedkd_config config;
    fedkd_status status = fedkd_config_load(&config, NULL, overrides, n);
    CHECK(status == FEDKD_OK, "config: %s", fedkd_error_message());
    if (status) return 1;
    /* The directory is this test's own: a run left by an earlier pass of
     * the suite is started over. */
    fedkd_run_options options = {.start_over = 1};
    status = fedkd_run_with_options(&config, MPI_COMM_WORLD, &options, result);
    CHECK(status == FEDKD_OK, "%s run: %s", mode, fedkd_error_message());
    fedkd_config_free(&config);
    return status != FEDKD_OK;
}

static void check_one_client_equals_centralized(void)
{
    fedkd_run_result central, federated;
    if (run_mode("centralized", &central) || run_mode("federated", &federated)) return;
    CHECK(central.num_params == federated.num_params && central.num_params > 0,
          "parameter counts %zu vs %zu", central.num_params, federated.num_params);
    double worst = 0.0, moved = 0.0;
    for (size_t i = 0; i < central.num_params; i++) {
        worst = fmax(worst, fabs((double)central.final_params[i] - (double)federated.final_params[i]));
        moved = fmax(moved, fabs((double)central.final_params[i]));
    }
    /* The federated path rounds the update to 2^-40 fixed point, so equal to
     * float rounding, not bit for bit. */
    CHECK(worst <= 1e-6, "one-client FedAvg differs from centralized by %g", worst);
    CHECK(moved > 1e-3, "the model did not train (max |w| %g)", moved);
    CHECK_CLOSE(central.final_accuracy, federated.final_accuracy, 1e-9, "test accuracy");
    free(central.final_params);
    free(federated.final_params);
}

static void check_identical_updates_average_to_themselves(void)
{
    enum { N = 3000, K = 7 };
    static float update[N];
    fedkd_rng rng = fedkd_rng_stream(3, FEDKD_RNG_TEST, 0, 0);
    for (int i = 0; i < N; i++) update[i] = (float)(fedkd_rng_normal(&rng) * 0.1);
    int64_t *sum = calloc(N, sizeof *sum);
    for (int k = 0; k < K; k++)
        CHECK(fedkd_fixed_accumulate(sum, update, N, 1.0 / K) == FEDKD_OK, "accumulate");
    double worst = 0.0;
    for (int i = 0; i < N; i++)
        worst = fmax(worst, fabs(fedkd_fixed_to_double(sum[i]) - (double)update[i]));
    CHECK(worst <= K * 0x1p-40, "average of identical updates off by %g", worst);
    /* A non-finite update is refused, not summed: the sum is left as it
     * was, to the bit, wherever the bad value is. */
    int64_t *before = malloc(N * sizeof *before);
    memcpy(before, sum, N * sizeof *before);
    update[2500] = NAN;
    CHECK(fedkd_fixed_accumulate(sum, update, N, 0.3) == FEDKD_ERR_NUMERIC, "NaN accepted");
    CHECK(memcmp(before, sum, N * sizeof *before) == 0, "a refused update changed the sum");
    free(before);
    free(sum);
}

/* The fixed-point conversion rounds half away from zero, as llround does,
 * for values at and next to the halves, of either sign and up to the limit. */
static void check_fixed_rounding_is_llround(void)
{
    enum { N = 14 };
    /* value * 2^40 lands on k + 1/2, next to it, or near FEDKD_FIXED_LIMIT. */
    const float values[N] = {0x1p-41f,  -0x1p-41f, 0x3p-41f,        -0x3p-41f,
                             0x1.000002p-41f, -0x1.000002p-41f, 0x1.fffffep-42f,
                             -0x1.fffffep-42f, 0x5p-41f, 0.0f, -0.0f, 3.9e6f, -3.9e6f,
                             0x1.8p-30f};
    for (int i = 0; i < N; i++) {
        int64_t sum = 0;
        CHECK(fedkd_fixed_accumulate(&sum, &values[i], 1, 1.0) == FEDKD_OK, "accumulate %d", i);
        long long want = llround((double)values[i] * FEDKD_FIXED_SCALE);
        CHECK(sum == want, "value %a: fixed point %lld, llround %lld", (double)values[i],
              (long long)sum, want);
    }
}

/* The same through the vectorised pass, for every binade the fixed-point
 * values can reach (2^-2 to 2^61 after scaling): the halves k + 1/2, the
 * doubles next to them and to k, of either sign. The weight puts the scaled
 * value exactly on the target (a power-of-two scale and a factor 1.0 are
 * exact), and 67 lanes (not a multiple of a vector) take +1, -1 and 0 in
 * turn, so that the body and the tail of every clone see each case. */
static void check_fixed_rounding_every_binade(void)
{
    enum { N = 67 };
    float values[N];
    int64_t sum[N];
    for (int i = 0; i < N; i++) values[i] = i % 3 == 0 ? 1.0f : i % 3 == 1 ? -1.0f : 0.0f;
    uint64_t state = 0x9e3779b97f4a7c15ull;
    long cases = 0;
    for (int e = -2; e <= 61; e++) {
        for (int draw = 0; draw < 24; draw++) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            /* A k in [2^e, 2^(e+1)), then the candidates around k + 1/2. */
            double k = floor(ldexp(1.0 + (double)(state >> 11) * 0x1p-53, e));
            double half = k + 0.5;
            double targets[6] = {half, nextafter(half, 0.0), nextafter(half, INFINITY), k,
                                 nextafter(k, INFINITY), nextafter(k + 1.0, 0.0)};
            for (int t = 0; t < 6; t++) {
                if (!(targets[t] > 0.0) || targets[t] > FEDKD_FIXED_LIMIT * FEDKD_FIXED_SCALE)
                    continue;
                double weight = targets[t] / FEDKD_FIXED_SCALE;
                memset(sum, 0, sizeof sum);
                CHECK(fedkd_fixed_accumulate(sum, values, N, weight) == FEDKD_OK,
                      "accumulate %a", targets[t]);
                long long want = llround(targets[t]);
                for (int i = 0; i < N; i++) {
                    long long lane = i % 3 == 0 ? want : i % 3 == 1 ? -want : 0;
                    if (sum[i] != lane) {
                        CHECK(0, "scaled value %a, lane %d: fixed point %lld, llround %lld",
                              (double)values[i] * targets[t], i, (long long)sum[i], lane);
                        return;
                    }
                }
                cases++;
            }
        }
    }
    CHECK(cases > 64 * 24 * 5, "only %ld rounding cases ran", cases);
}

static void check_sampling_and_placement(void)
{
    int selected[100];
    for (int round = 1; round <= 20; round++) {
        int m = fedkd_select_clients(9, round, 100, 0.1, selected);
        CHECK(m == 10, "fraction 0.1 of 100 gave %d", m);
        for (int i = 1; i < m; i++)
            CHECK(selected[i] > selected[i - 1], "selection not ascending and distinct");
        CHECK(selected[0] >= 0 && selected[m - 1] < 100, "selection out of range");
    }
    int first[100], second[100];
    fedkd_select_clients(9, 1, 100, 5.0, first);
    fedkd_select_clients(9, 2, 100, 5.0, second);
    CHECK(memcmp(first, second, 5 * sizeof(int)) != 0, "rounds 1 and 2 chose the same clients");
    CHECK(fedkd_clients_per_round(15, 1.0) == 15, "fraction 1");
    CHECK(fedkd_clients_per_round(15, 0.01) == 1, "at least one client");
    CHECK(fedkd_clients_per_round(15, 40.0) == 15, "count capped");
    CHECK(fedkd_client_host_rank(7, 1) == 0, "P = 1 hosts on rank 0");
    CHECK(fedkd_client_host_rank(0, 4) == 1 && fedkd_client_host_rank(3, 4) == 1 &&
              fedkd_client_host_rank(5, 4) == 3,
          "round-robin placement");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    fedkd_log_set_quiet(1);
    check_one_client_equals_centralized();
    check_identical_updates_average_to_themselves();
    check_fixed_rounding_is_llround();
    check_fixed_rounding_every_binade();
    check_sampling_and_placement();
    int code = test_finish("test_fl_equivalence");
    MPI_Finalize();
    return code;
}
