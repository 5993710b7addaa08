/* The KD-consolidated start's two consolidations, in one MPI process:
 * - the ensemble's soft targets equal the mean over clients of
 *   softmax_T(logits) computed directly (kd.ensemble "probs"), or softmax_T
 *   of the mean logits ("logits"), within float rounding (1e-6);
 * - they are bit-identical whatever order the hosted models come in (the
 *   fixed-point sum does not depend on placement; kd_start_test.sh checks
 *   other numbers of processes end to end);
 * - the average of the weights is the sample-weighted mean, and clients
 *   with identical models average to that model;
 * - a model whose logits are not finite stops the ensemble with a message. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "fedkd/core/core.h"
#include "fedkd/nn/nn.h"
#include "fedkd/core/rng.h"
#include "experiments/kd_start_private.h"
#include "../test_util.h"

enum { CLIENTS = 5, COUNT = 7, CLASSES = 4, PARAMS = 33 };

static float logits[CLIENTS][COUNT * CLASSES];

static void fill_logits(void)
{
    fedkd_rng rng = fedkd_rng_stream(7, 0, 1, 2);
    for (int c = 0; c < CLIENTS; c++)
        for (int i = 0; i < COUNT * CLASSES; i++)
            logits[c][i] = 6.0f * (float)fedkd_rng_uniform(&rng) - 3.0f;
}

static void test_ensemble(int ensemble_logits, float temperature)
{
    const float *order[CLIENTS], *reversed[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        order[c] = logits[c];
        reversed[c] = logits[CLIENTS - 1 - c];
    }
    float targets[COUNT * CLASSES], again[COUNT * CLASSES];
    fedkd_status status = kd_start_ensemble_targets(MPI_COMM_WORLD, order, CLIENTS, CLIENTS, COUNT,
                                                    CLASSES, temperature, ensemble_logits, targets);
    CHECK(status == FEDKD_OK, "ensemble: %s", fedkd_error_message());
    status = kd_start_ensemble_targets(MPI_COMM_WORLD, reversed, CLIENTS, CLIENTS, COUNT, CLASSES,
                                       temperature, ensemble_logits, again);
    CHECK(status == FEDKD_OK, "ensemble, reversed: %s", fedkd_error_message());
    CHECK(memcmp(targets, again, sizeof targets) == 0,
          "the targets depend on the order of the models (ensemble_logits %d)", ensemble_logits);

    /* Directly: the mean of the clients' softened distributions, or the
     * softened mean of their logits. */
    for (int i = 0; i < COUNT; i++) {
        double mean[CLASSES] = {0};
        float row[CLASSES], probs[CLASSES];
        for (int c = 0; c < CLIENTS; c++) {
            const float *z = logits[c] + i * CLASSES;
            if (ensemble_logits) {
                for (int k = 0; k < CLASSES; k++) mean[k] += (double)z[k] / CLIENTS;
            } else {
                fedkd_softmax(z, probs, 1, CLASSES, temperature);
                for (int k = 0; k < CLASSES; k++) mean[k] += (double)probs[k] / CLIENTS;
            }
        }
        if (ensemble_logits) {
            for (int k = 0; k < CLASSES; k++) row[k] = (float)mean[k];
            fedkd_softmax(row, probs, 1, CLASSES, temperature);
            for (int k = 0; k < CLASSES; k++) mean[k] = probs[k];
        }
        double sum = 0.0;
        for (int k = 0; k < CLASSES; k++) {
            char what[96];
            snprintf(what, sizeof what, "target (%d, %d), ensemble_logits %d, T %g", i, k,
                     ensemble_logits, (double)temperature);
            CHECK_CLOSE(targets[i * CLASSES + k], mean[k], 1e-6, what);
            sum += (double)targets[i * CLASSES + k];
        }
        CHECK_CLOSE(sum, 1.0, 1e-5, "a target row sums to 1");
    }
}

/* A higher temperature softens: the targets' largest entry falls. */
static void test_temperature_softens(void)
{
    const float *order[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) order[c] = logits[c];
    float cold[COUNT * CLASSES], hot[COUNT * CLASSES];
    kd_start_ensemble_targets(MPI_COMM_WORLD, order, CLIENTS, CLIENTS, COUNT, CLASSES, 1.0f, 0,
                              cold);
    kd_start_ensemble_targets(MPI_COMM_WORLD, order, CLIENTS, CLIENTS, COUNT, CLASSES, 8.0f, 0,
                              hot);
    for (int i = 0; i < COUNT; i++) {
        float max_cold = 0.0f, max_hot = 0.0f;
        for (int k = 0; k < CLASSES; k++) {
            max_cold = fmaxf(max_cold, cold[i * CLASSES + k]);
            max_hot = fmaxf(max_hot, hot[i * CLASSES + k]);
        }
        CHECK(max_hot < max_cold, "row %d: T = 8 gives max %g, T = 1 gives %g", i,
              (double)max_hot, (double)max_cold);
    }
}

static void test_not_finite(void)
{
    float bad[COUNT * CLASSES];
    memcpy(bad, logits[0], sizeof bad);
    bad[5] = NAN;
    const float *order[2] = {logits[1], bad};
    float targets[COUNT * CLASSES];
    fedkd_status status = kd_start_ensemble_targets(MPI_COMM_WORLD, order, 2, 2, COUNT, CLASSES,
                                                    1.0f, 1, targets);
    CHECK(status == FEDKD_ERR_NUMERIC, "NaN logits: status %d", (int)status);
    CHECK(strstr(fedkd_error_message(), "logits on the public set") != NULL, "message: %s",
          fedkd_error_message());
    fedkd_error_clear();
}

static void test_average(void)
{
    float params[3][PARAMS], average[PARAMS];
    fedkd_rng rng = fedkd_rng_stream(11, 0, 3, 4);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < PARAMS; i++)
            params[c][i] = 2.0f * (float)fedkd_rng_uniform(&rng) - 1.0f;
    const double sizes[3] = {100, 300, 37};
    double weights[3], total = sizes[0] + sizes[1] + sizes[2];
    for (int c = 0; c < 3; c++) weights[c] = sizes[c] / total;
    const float *list[3] = {params[0], params[1], params[2]};
    fedkd_status status =
        kd_start_average_params(MPI_COMM_WORLD, list, weights, 3, PARAMS, average);
    CHECK(status == FEDKD_OK, "average: %s", fedkd_error_message());
    for (int i = 0; i < PARAMS; i++) {
        double want = 0.0;
        for (int c = 0; c < 3; c++) want += weights[c] * (double)params[c][i];
        CHECK_CLOSE(average[i], want, 1e-6, "weighted average");
    }
    /* Identical clients: the average is their model. */
    const float *same[3] = {params[2], params[2], params[2]};
    status = kd_start_average_params(MPI_COMM_WORLD, same, weights, 3, PARAMS, average);
    CHECK(status == FEDKD_OK, "average of identical models: %s", fedkd_error_message());
    for (int i = 0; i < PARAMS; i++)
        CHECK_CLOSE(average[i], params[2][i], 1e-7, "average of identical models");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    fill_logits();
    test_ensemble(0, 1.0f);
    test_ensemble(0, 4.0f);
    test_ensemble(1, 1.0f);
    test_ensemble(1, 4.0f);
    test_temperature_softens();
    test_not_finite();
    test_average();
    int code = test_finish("kd-start-consolidation");
    MPI_Finalize();
    return code;
}
