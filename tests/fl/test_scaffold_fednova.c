/* SCAFFOLD and FedNova, by hand and against FedAvg (one MPI process):
 * - the control-variate update and the effective step count on numbers
 *   worked out by hand;
 * - SCAFFOLD with one client is FedAvg: bit for bit after one round (the
 *   variates start at zero), to float rounding after three (c = c_1 then,
 *   up to the 2^-40 fixed point);
 * - FedNova with equal local steps is FedAvg to the fixed-point resolution;
 *   with unequal steps it is not (the check can fail). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/core/core.h"
#include "fedkd/experiments/experiments.h"
#include "fl/fl_round.h"
#include "../test_util.h"

static void check_effective_steps(void)
{
    CHECK_CLOSE(fl_sgd_effective_steps(7, 0.0), 7.0, 1e-15, "no momentum: the step count");
    /* m = 0.5, 3 steps: (0.5 + 0.75 + 0.875) / 0.5 = 4.25 */
    CHECK_CLOSE(fl_sgd_effective_steps(3, 0.5), 4.25, 1e-15, "momentum 0.5, 3 steps");
    CHECK_CLOSE(fl_sgd_effective_steps(0, 0.9), 0.0, 1e-15, "no steps");
}

static void check_variate_update(void)
{
    /* c_i = (1, -2), c = (0.5, 0.5), x = (1, 1), y = (0.8, 1.4), K = 4,
     * lr = 0.1: (x - y) / (K lr) = (0.5, -1), so c_i+ = (1 - 0.5 + 0.5,
     * -2 - 0.5 - 1) = (1, -3.5) and the change is (0, -1.5). */
    float client[2] = {1.0f, -2.0f}, server[2] = {0.5f, 0.5f};
    float x[2] = {1.0f, 1.0f}, y[2] = {0.8f, 1.4f}, change[2];
    fl_scaffold_update_variate(client, server, x, y, 2, 4.0, 0.1, change);
    CHECK_CLOSE(client[0], 1.0, 1e-6, "c_i+[0]");
    CHECK_CLOSE(client[1], -3.5, 1e-6, "c_i+[1]");
    CHECK_CLOSE(change[0], 0.0, 1e-6, "change[0]");
    CHECK_CLOSE(change[1], -1.5, 1e-6, "change[1]");
    /* No step: the variate stays, the change is zero. */
    fl_scaffold_update_variate(client, server, x, y, 2, 0.0, 0.1, change);
    CHECK(client[1] == -3.5f && change[0] == 0.0f && change[1] == 0.0f, "no step changed c_i");
}

static const char *common[] = {
    "mode=federated", "data.name=synthetic", "data.synthetic_train=600",
    "data.synthetic_test=200", "data.synthetic_separation=0.8",
    "model=[{\"type\":\"dense\",\"units\":16},{\"type\":\"relu\"},{\"type\":\"dense\",\"units\":4}]",
    "local.epochs=2", "local.batch_size=32", "local.lr=0.05", "clients.per_round=1",
    "partition.min_size=5", "checkpoint.every=0", "run.dir=/tmp/fedkd-test-scaffold-fednova",
};

/* Runs one federation with `common` plus the given overrides. */
static int run(fedkd_run_result *result, const char *a, const char *b, const char *c,
               const char *d)
{
    const char *overrides[32];
    int n = 0;
    for (size_t i = 0; i < sizeof common / sizeof *common; i++) overrides[n++] = common[i];
    const char *extra[] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        if (extra[i]) overrides[n++] = extra[i];
    fedkd_config config;
    memset(result, 0, sizeof *result);
    fedkd_status status = fedkd_config_load(&config, NULL, overrides, n);
    CHECK(status == FEDKD_OK, "config: %s", fedkd_error_message());
    if (status) return 1;
    /* The directory is this test's own and every run starts it over. */
    fedkd_run_options options = {.start_over = 1};
    status = fedkd_run_with_options(&config, MPI_COMM_WORLD, &options, result);
    CHECK(status == FEDKD_OK, "%s run: %s", config.algorithm, fedkd_error_message());
    fedkd_config_free(&config);
    return status != FEDKD_OK;
}

static double max_difference(const fedkd_run_result *a, const fedkd_run_result *b)
{
    if (a->num_params != b->num_params || !a->final_params || !b->final_params) return INFINITY;
    double worst = 0.0;
    for (size_t i = 0; i < a->num_params; i++)
        worst = fmax(worst, fabs((double)a->final_params[i] - (double)b->final_params[i]));
    return worst;
}

static void check_scaffold_one_client(void)
{
    fedkd_run_result fedavg, scaffold;
    if (run(&fedavg, "algorithm=fedavg", "clients.count=1", "rounds=1", NULL) ||
        run(&scaffold, "algorithm=scaffold", "clients.count=1", "rounds=1", NULL))
        return;
    CHECK(max_difference(&fedavg, &scaffold) == 0.0,
          "one round, one client: SCAFFOLD differs from FedAvg by %g",
          max_difference(&fedavg, &scaffold));
    CHECK(scaffold.bytes_down_total == 2 * fedavg.bytes_down_total &&
              scaffold.bytes_up_total == 2 * fedavg.bytes_up_total,
          "SCAFFOLD moves x and c: %llu / %llu bytes, FedAvg %llu / %llu",
          (unsigned long long)scaffold.bytes_down_total, (unsigned long long)scaffold.bytes_up_total,
          (unsigned long long)fedavg.bytes_down_total, (unsigned long long)fedavg.bytes_up_total);
    free(fedavg.final_params);
    free(scaffold.final_params);
    if (run(&fedavg, "algorithm=fedavg", "clients.count=1", "rounds=3", NULL) ||
        run(&scaffold, "algorithm=scaffold", "clients.count=1", "rounds=3", NULL))
        return;
    CHECK(max_difference(&fedavg, &scaffold) <= 1e-6,
          "three rounds, one client: SCAFFOLD differs from FedAvg by %g",
          max_difference(&fedavg, &scaffold));
    free(fedavg.final_params);
    free(scaffold.final_params);
    /* With several skewed clients the variates act (the check can fail). */
    if (run(&fedavg, "algorithm=fedavg", "clients.count=4", "rounds=3", "partition.alpha=0.2") ||
        run(&scaffold, "algorithm=scaffold", "clients.count=4", "rounds=3",
            "partition.alpha=0.2"))
        return;
    CHECK(max_difference(&fedavg, &scaffold) > 1e-4,
          "four skewed clients: SCAFFOLD equals FedAvg (difference %g)",
          max_difference(&fedavg, &scaffold));
    free(fedavg.final_params);
    free(scaffold.final_params);
}

static void check_fednova(void)
{
    /* iid: 600 samples in 3 equal parts, 7 steps each per epoch. */
    fedkd_run_result fedavg, fednova;
    if (run(&fedavg, "algorithm=fedavg", "clients.count=3", "rounds=2", "partition.scheme=iid") ||
        run(&fednova, "algorithm=fednova", "clients.count=3", "rounds=2", "partition.scheme=iid"))
        return;
    CHECK(max_difference(&fedavg, &fednova) <= 1e-6,
          "equal steps: FedNova differs from FedAvg by %g", max_difference(&fedavg, &fednova));
    CHECK(fednova.bytes_up_total == fedavg.bytes_up_total + 2 * 3 * 4,
          "FedNova uploads P + 1 floats: %llu bytes, FedAvg %llu",
          (unsigned long long)fednova.bytes_up_total, (unsigned long long)fedavg.bytes_up_total);
    free(fedavg.final_params);
    free(fednova.final_params);
    /* quantity(0.3): client sizes, hence step counts, differ. */
    if (run(&fedavg, "algorithm=fedavg", "clients.count=3", "rounds=2",
            "partition.scheme=quantity") ||
        run(&fednova, "algorithm=fednova", "clients.count=3", "rounds=2",
            "partition.scheme=quantity"))
        return;
    CHECK(max_difference(&fedavg, &fednova) > 1e-4,
          "unequal steps: FedNova equals FedAvg (difference %g)", max_difference(&fedavg, &fednova));
    free(fedavg.final_params);
    free(fednova.final_params);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    fedkd_log_set_quiet(1);
    check_effective_steps();
    check_variate_update();
    check_scaffold_one_client();
    check_fednova();
    int code = test_finish("test_scaffold_fednova");
    MPI_Finalize();
    return code;
}
