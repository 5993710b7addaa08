/* A client's first local step, the one every selected client takes from
 * the global model each round (with 1000 clients of 60 samples, the only
 * one): SGD's first step after a reset, reading the global model in place
 * and writing the stepped parameters into the client's own. Times the
 * fused form (fedkd_optimizer_backward_step_into: the first dense layer's
 * weights stepped inside the backward pass) against the backward pass
 * followed by the step into (fedkd_model_backward, then
 * fedkd_optimizer_step_model_clear_grads_into), alternated step by step in
 * one process on random inputs, and checks that both give the same
 * parameters and velocity.
 *
 *   fedkd-bench-first-step [--model mlp] [--batch 60] [--steps 2000]
 *
 * Run it pinned to one core with one BLAS thread (bench/README.md). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fedkd/core/rng.h"
#include "fedkd/nn/nn.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int usage(void)
{
    fprintf(stderr, "usage: fedkd-bench-first-step [--model mlp|cnn] [--batch N (1 - 4096)] "
                    "[--steps N (1 - 1000000)]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *preset = "mlp";
    long batch = 60, steps = 2000;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (i + 1 >= argc) return usage();
        if (strcmp(argv[i], "--model") == 0) {
            preset = argv[++i];
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = strtol(argv[++i], &end, 10);
            if (*end || batch < 1 || batch > 4096) return usage();
        } else if (strcmp(argv[i], "--steps") == 0) {
            steps = strtol(argv[++i], &end, 10);
            if (*end || steps < 1 || steps > 1000000) return usage();
        } else {
            return usage();
        }
    }
    fedkd_model_spec spec;
    fedkd_model *model[2] = {NULL, NULL};
    fedkd_optimizer *optimizer[2] = {NULL, NULL};
    float *global = NULL, *own[2] = {NULL, NULL}, *input = NULL, *d_logits = NULL;
    int32_t *labels = NULL;
    int status = 1;
    if (fedkd_model_spec_preset(&spec, preset, (fedkd_shape){1, 28, 28}, 10) != FEDKD_OK) {
        fprintf(stderr, "fedkd-bench-first-step: --model %s: %s\n", preset, fedkd_error_message());
        return 2;
    }
    fedkd_optimizer_settings settings = fedkd_optimizer_default_settings();
    settings.lr = 0.02f;
    settings.momentum = 0.9f;
    for (int k = 0; k < 2; k++) {
        if (fedkd_model_create(&model[k], &spec, (int)batch) != FEDKD_OK) goto fail;
        fedkd_model_init_params(model[k], 1, 0);
        model[k]->training = 1;
        if (fedkd_optimizer_create(&optimizer[k], &settings, model[k]->num_params) != FEDKD_OK)
            goto fail;
    }
    size_t n = model[0]->num_params, features = 28 * 28;
    global = malloc(n * sizeof *global);
    own[0] = model[0]->params;
    own[1] = model[1]->params;
    input = malloc((size_t)batch * features * sizeof *input);
    d_logits = malloc((size_t)batch * 10 * sizeof *d_logits);
    labels = malloc((size_t)batch * sizeof *labels);
    if (!global || !input || !d_logits || !labels) goto fail;
    memcpy(global, own[0], n * sizeof *global);
    fedkd_rng rng = fedkd_rng_stream(1, 0, 0, 0);
    for (size_t i = 0; i < (size_t)batch * features; i++) input[i] = (float)fedkd_rng_uniform(&rng);
    for (long i = 0; i < batch; i++) labels[i] = (int32_t)(i % 10);

    double spent[2] = {0.0, 0.0};
    for (long step = 0; step < steps; step++)
        for (int k = 0; k < 2; k++) {
            fedkd_model *m = model[k];
            fedkd_optimizer_reset(optimizer[k]);
            m->params = global;
            const float *logits = fedkd_model_forward(m, input, (int)batch);
            fedkd_loss_cross_entropy(logits, labels, (int)batch, 10, d_logits);
            double start = seconds();
            if (k == 1) {
                fedkd_optimizer_backward_step_into(optimizer[k], m, d_logits, (int)batch, own[k],
                                                   NULL, NULL);
            } else {
                fedkd_model_backward(m, d_logits, (int)batch);
                fedkd_optimizer_step_model_clear_grads_into(optimizer[k], m, own[k], NULL, NULL);
            }
            spent[k] += seconds() - start;
            m->params = own[k];
        }
    size_t floats = 0;
    const float *state0 = fedkd_optimizer_state(optimizer[0], &floats);
    const float *state1 = fedkd_optimizer_state(optimizer[1], NULL);
    int same = memcmp(own[0], own[1], n * sizeof(float)) == 0 &&
               memcmp(state0, state1, floats * sizeof *state0) == 0;
    printf("%s, batch %ld, %ld steps of each, OpenBLAS kernels %s\n", preset, batch, steps,
           fedkd_sgemm_core());
    printf("backward pass then step into: %.1f us a step\n", 1e6 * spent[0] / (double)steps);
    printf("fused (backward_step_into):   %.1f us a step, %.3f x the two passes\n",
           1e6 * spent[1] / (double)steps, spent[1] / spent[0]);
    printf("same parameters and velocity: %s\n", same ? "yes" : "NO");
    status = same ? 0 : 1;
fail:
    if (status && !global) fprintf(stderr, "fedkd-bench-first-step: %s\n", fedkd_error_message());
    for (int k = 0; k < 2; k++) {
        fedkd_optimizer_destroy(&optimizer[k]);
        fedkd_model_destroy(&model[k]);
    }
    free(global);
    free(input);
    free(d_logits);
    free(labels);
    return status;
}
