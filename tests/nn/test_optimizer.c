/* Optimizer steps against numbers worked out by hand (relative 1e-6 for
 * SGD, 1e-5 for Adam, whose sqrt and bias corrections run in float),
 * convergence on a quadratic, and the vectorised SGD and the clearing step
 * bit for bit against the plain loop and step + zero_grad. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/rng.h"
#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"
#include "test_layer.h"
#include "test_util.h"

static fedkd_optimizer *make(const char *name, float lr, float momentum, int nesterov,
                             float weight_decay, size_t n)
{
    fedkd_optimizer_settings s = fedkd_optimizer_default_settings();
    snprintf(s.name, sizeof s.name, "%s", name);
    s.lr = lr;
    s.momentum = momentum;
    s.nesterov = nesterov;
    s.weight_decay = weight_decay;
    fedkd_optimizer *optimizer = NULL;
    fedkd_status status = fedkd_optimizer_create(&optimizer, &s, n);
    CHECK(status == FEDKD_OK && optimizer, "create %s: %s", name, fedkd_error_message());
    return optimizer;
}

static void check_sgd_by_hand(void)
{
    /* lr 0.1, momentum 0.9, weight decay 0.01, w = (1, -2), grads (0.5, 0.25)
     * twice. Step 1: g = grad + 0.01 w = (0.51, 0.23), v = g.
     *   plain:    w -= 0.1 v           -> (0.949, -2.023)
     *   nesterov: w -= 0.1 (g + 0.9 v) -> (0.9031, -2.0437)
     * Step 2, plain: g = (0.50949, 0.22977), v = 0.9 (0.51, 0.23) + g
     *   = (0.96849, 0.43677), w = (0.852151, -2.066677).
     * Step 2, nesterov: g = (0.509031, 0.229563), v = (0.968031, 0.436563),
     *   g + 0.9 v = (1.3802589, 0.6224697), w = (0.76507411, -2.10594697). */
    const float grads[2] = {0.5f, 0.25f};
    const double plain[2][2] = {{0.949, -2.023}, {0.852151, -2.066677}};
    const double nesterov[2][2] = {{0.9031, -2.0437}, {0.76507411, -2.10594697}};
    for (int use_nesterov = 0; use_nesterov < 2; use_nesterov++) {
        fedkd_optimizer *optimizer = make("sgd", 0.1f, 0.9f, use_nesterov, 0.01f, 2);
        if (!optimizer) return;
        float w[2] = {1.0f, -2.0f};
        const double(*expected)[2] = use_nesterov ? nesterov : plain;
        for (int step = 0; step < 2; step++) {
            fedkd_optimizer_step(optimizer, w, grads);
            CHECK_CLOSE(w[0], expected[step][0], 1e-6, use_nesterov ? "nesterov w0" : "sgd w0");
            CHECK_CLOSE(w[1], expected[step][1], 1e-6, use_nesterov ? "nesterov w1" : "sgd w1");
        }
        size_t floats = 0;
        float *state = fedkd_optimizer_state(optimizer, &floats);
        CHECK(floats == 2 && state, "sgd state holds the velocity: %zu floats", floats);
        /* Reset clears momentum: the next step is a plain first step again,
         * bit for bit that of a new optimizer, whatever the velocity held
         * (SGD's reset only marks it: the step after it reads none). */
        state[0] = NAN;
        state[1] = 1e30f;
        fedkd_optimizer_reset(optimizer);
        w[0] = 1.0f;
        w[1] = -2.0f;
        fedkd_optimizer_step(optimizer, w, grads);
        CHECK_CLOSE(w[0], expected[0][0], 1e-6, "first step after reset");
        fedkd_optimizer *new_one = make("sgd", 0.1f, 0.9f, use_nesterov, 0.01f, 2);
        float fresh_w[2] = {1.0f, -2.0f};
        if (new_one) fedkd_optimizer_step(new_one, fresh_w, grads);
        CHECK(new_one && memcmp(w, fresh_w, sizeof w) == 0,
              "the first step after a reset differs from a new optimizer's");
        fedkd_optimizer_destroy(&new_one);
        /* Asked for after a reset, the state reads as zero. */
        fedkd_optimizer_reset(optimizer);
        state = fedkd_optimizer_state(optimizer, NULL);
        CHECK(state[0] == 0.0f && state[1] == 0.0f, "reset clears the velocity");
        fedkd_optimizer_destroy(&optimizer);
        CHECK(optimizer == NULL, "destroy clears the pointer");
    }

    /* Defaults: plain SGD, lr 0.01, no momentum: w -= 0.01 g exactly. */
    fedkd_optimizer_settings defaults = fedkd_optimizer_default_settings();
    CHECK(strcmp(defaults.name, "sgd") == 0 && defaults.lr == 0.01f && defaults.momentum == 0.0f &&
              defaults.beta1 == 0.9f && defaults.beta2 == 0.999f && defaults.epsilon == 1e-8f,
          "default settings");
    fedkd_optimizer *optimizer = NULL;
    CHECK(fedkd_optimizer_create(&optimizer, &defaults, 2) == FEDKD_OK, "create defaults");
    float w[2] = {1.0f, -2.0f};
    fedkd_optimizer_step(optimizer, w, grads);
    fedkd_optimizer_step(optimizer, w, grads);
    CHECK_CLOSE(w[0], 0.99, 1e-6, "default sgd");
    CHECK_CLOSE(w[1], -2.005, 1e-6, "default sgd");
    fedkd_optimizer_destroy(&optimizer);
}

static void check_adam_by_hand(void)
{
    /* lr 0.01, beta 0.9 / 0.999, eps 1e-8, w = (1, -2).
     * Step 1, g = (0.5, -0.1): m_hat = g, v_hat = g^2, so w moves by
     *   0.01 sign(g): (0.99, -1.99).
     * Step 2, g = (0.2, -0.3): m = 0.9 * 0.05 + 0.1 * 0.2 = 0.065,
     *   v = 0.999 * 0.00025 + 0.001 * 0.04 = 0.00028975,
     *   m_hat = 0.065 / 0.19, v_hat = 0.00028975 / 0.001999,
     *   w0 = 0.99 - 0.01 * 0.342105 / 0.380719 = 0.98101425 (likewise w1).
     * Step 3, g = (-0.4, 0.05). */
    const float grads[3][2] = {{0.5f, -0.1f}, {0.2f, -0.3f}, {-0.4f, 0.05f}};
    const double expected[3][2] = {{0.9900000002, -1.990000001},
                                   {0.9810142484, -1.9808221902},
                                   {0.9792514598, -1.9748130570}};
    fedkd_optimizer *optimizer = make("adam", 0.01f, 0.0f, 0, 0.0f, 2);
    if (!optimizer) return;
    float w[2] = {1.0f, -2.0f};
    for (int step = 0; step < 3; step++) {
        fedkd_optimizer_step(optimizer, w, grads[step]);
        CHECK_CLOSE(w[0], expected[step][0], 1e-5, "adam w0");
        CHECK_CLOSE(w[1], expected[step][1], 1e-5, "adam w1");
    }
    size_t floats = 0;
    float *state = fedkd_optimizer_state(optimizer, &floats);
    CHECK(floats == 5, "adam state: m, v and the step count, got %zu floats", floats);
    CHECK(state[4] == 3.0f, "adam step count %g", (double)state[4]);

    /* Restoring the state buffer resumes exactly where a run left off. */
    float saved[5];
    memcpy(saved, state, sizeof saved);
    float w_resumed[2] = {w[0], w[1]};
    fedkd_optimizer_step(optimizer, w, grads[0]);
    fedkd_optimizer *restored = make("adam", 0.01f, 0.0f, 0, 0.0f, 2);
    if (restored) {
        memcpy(fedkd_optimizer_state(restored, NULL), saved, sizeof saved);
        fedkd_optimizer_step(restored, w_resumed, grads[0]);
        CHECK(w_resumed[0] == w[0] && w_resumed[1] == w[1], "restored adam state resumes exactly");
        fedkd_optimizer_destroy(&restored);
    }
    fedkd_optimizer_reset(optimizer);
    CHECK(state[0] == 0.0f && state[2] == 0.0f && state[4] == 0.0f, "adam reset");
    fedkd_optimizer_destroy(&optimizer);
}

/* f(w) = 0.5 sum a_i (w_i - c_i)^2 with curvatures a in [0.5, 2]. */
static double minimise_quadratic(fedkd_optimizer *optimizer, int steps)
{
    enum { n = 8 };
    float w[n], g[n], a[n], c[n];
    for (int i = 0; i < n; i++) {
        w[i] = 0.0f;
        a[i] = 0.5f + 1.5f * (float)i / (n - 1);
        c[i] = (float)(i % 3) - 1.5f + 0.25f * (float)i;
    }
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < n; i++) g[i] = a[i] * (w[i] - c[i]);
        fedkd_optimizer_step(optimizer, w, g);
    }
    double worst = 0.0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)(w[i] - c[i])));
    return worst;
}

static void check_quadratic(void)
{
    struct {
        const char *name;
        float lr, momentum;
        int nesterov, steps;
        double tolerance;
    } runs[] = {
        {"sgd", 0.5f, 0.0f, 0, 200, 1e-4},
        {"sgd", 0.1f, 0.9f, 0, 400, 1e-4},
        {"sgd", 0.1f, 0.9f, 1, 400, 1e-4},
        {"adam", 0.05f, 0.0f, 0, 2000, 1e-3},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        fedkd_optimizer *optimizer =
            make(runs[r].name, runs[r].lr, runs[r].momentum, runs[r].nesterov, 0.0f, 8);
        if (!optimizer) continue;
        double distance = minimise_quadratic(optimizer, runs[r].steps);
        CHECK(distance <= runs[r].tolerance,
              "%s lr %g momentum %g nesterov %d: %g from the minimum after %d steps",
              runs[r].name, (double)runs[r].lr, (double)runs[r].momentum, runs[r].nesterov,
              distance, runs[r].steps);
        fedkd_optimizer_destroy(&optimizer);
    }
}

static void check_errors(void)
{
    fedkd_optimizer_settings s = fedkd_optimizer_default_settings();
    snprintf(s.name, sizeof s.name, "rmsprop");
    fedkd_optimizer *optimizer = NULL;
    fedkd_status status = fedkd_optimizer_create(&optimizer, &s, 4);
    CHECK(status == FEDKD_ERR_CONFIG && optimizer == NULL, "unknown optimizer rejected");
    CHECK(strstr(fedkd_error_message(), "rmsprop") && strstr(fedkd_error_message(), "sgd") &&
              strstr(fedkd_error_message(), "adam"),
          "message names the optimizer and the choices: %s", fedkd_error_message());

    s = fedkd_optimizer_default_settings();
    s.momentum = 1.5f;
    status = fedkd_optimizer_create(&optimizer, &s, 4);
    CHECK(status == FEDKD_ERR_CONFIG && strstr(fedkd_error_message(), "momentum"),
          "momentum 1.5 rejected: %s", fedkd_error_message());
    s = fedkd_optimizer_default_settings();
    s.lr = -1.0f;
    status = fedkd_optimizer_create(&optimizer, &s, 4);
    CHECK(status == FEDKD_ERR_CONFIG && strstr(fedkd_error_message(), "lr"),
          "negative lr rejected: %s", fedkd_error_message());
}

static void fill(float *values, size_t count, fedkd_rng *rng)
{
    for (size_t i = 0; i < count; i++) values[i] = (float)(fedkd_rng_uniform(rng) - 0.5);
    /* Signed zeros too: a clearing step must leave +0.0f as memset does. */
    if (count > 2) values[count / 2] = -0.0f;
    if (count > 3) values[count / 3] = 0.0f;
}

/* SGD (each variant) on odd sizes, so that the vector loops' tails run,
 * against the scalar loop it replaced, written out here: same bits. */
static void check_sgd_vector_loop(void)
{
    const size_t sizes[] = {1, 7, 33, 1001};
    const struct {
        float momentum, decay;
        int nesterov;
    } variants[] = {{0.0f, 0.0f, 0}, {0.9f, 0.0f, 0}, {0.9f, 5e-4f, 0}, {0.9f, 5e-4f, 1}};
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        size_t n = sizes[z];
        float *w = malloc(n * sizeof *w), *w_ref = malloc(n * sizeof *w_ref);
        float *g = malloc(n * sizeof *g), *v_ref = calloc(n, sizeof *v_ref);
        if (!w || !w_ref || !g || !v_ref) {
            CHECK(0, "out of memory");
            goto next;
        }
        for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++) {
            float lr = 0.03f, m = variants[k].momentum, decay = variants[k].decay;
            fedkd_optimizer *optimizer = make("sgd", lr, m, variants[k].nesterov, decay, n);
            if (!optimizer) continue;
            fedkd_rng rng = fedkd_rng_stream(7, FEDKD_RNG_TEST, n, k);
            fill(w, n, &rng);
            memcpy(w_ref, w, n * sizeof *w);
            memset(v_ref, 0, n * sizeof *v_ref);
            for (int step = 0; step < 3; step++) {
                fill(g, n, &rng);
                fedkd_optimizer_step(optimizer, w, g);
                for (size_t i = 0; i < n; i++) {
                    float gi = g[i] + decay * w_ref[i];
                    v_ref[i] = m * v_ref[i] + gi;
                    if (variants[k].nesterov) w_ref[i] -= lr * (gi + m * v_ref[i]);
                    else w_ref[i] -= lr * v_ref[i];
                }
            }
            const float *v = fedkd_optimizer_state(optimizer, NULL);
            CHECK(memcmp(w, w_ref, n * sizeof *w) == 0 && memcmp(v, v_ref, n * sizeof *v) == 0,
                  "sgd momentum %g decay %g nesterov %d on %zu params: the same bits as the "
                  "scalar loop",
                  (double)m, (double)decay, variants[k].nesterov, n);
            fedkd_optimizer_destroy(&optimizer);
        }
    next:
        free(w);
        free(w_ref);
        free(g);
        free(v_ref);
    }
}

/* A term of the kind FedProx adds: 0.01 (w - 0.25). */
static void add_term(void *context, fedkd_model *model, size_t begin, size_t end)
{
    for (size_t i = begin; i < end; i++)
        model->grads[i] += 0.01f * (model->params[i] - 0.25f);
}

/* fedkd_optimizer_step_model_clear_grads against fedkd_optimizer_step_model
 * then fedkd_model_zero_grad, bit for bit (parameters, state, gradients),
 * with and without a gradient hook, on
 * a model of odd sizes whose batchnorm has running statistics (skipped by
 * the step, cleared all the same), for SGD variants and Adam. */
static void check_clear_grads(void)
{
    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "odd");
    spec.input = (fedkd_shape){37, 1, 1};
    spec.num_classes = 3;
    spec.layers[spec.num_layers++] = test_layer("dense", 113);
    spec.layers[spec.num_layers++] = test_layer("batchnorm", 0);
    spec.layers[spec.num_layers++] = test_layer("relu", 0);
    spec.layers[spec.num_layers++] = test_layer("dense", 3);
    const struct {
        const char *name;
        float momentum, decay;
        int nesterov;
    } variants[] = {{"sgd", 0.0f, 0.0f, 0}, {"sgd", 0.9f, 1e-3f, 0}, {"sgd", 0.9f, 1e-3f, 1},
                    {"adam", 0.0f, 1e-3f, 0}};
    for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++) {
        fedkd_model *two_pass = NULL, *fused = NULL;
        fedkd_optimizer *two_pass_opt = NULL, *fused_opt = NULL;
        float *zeros = NULL;
        if (fedkd_model_create(&two_pass, &spec, 4) != FEDKD_OK ||
            fedkd_model_create(&fused, &spec, 4) != FEDKD_OK) {
            CHECK(0, "create: %s", fedkd_error_message());
            goto next;
        }
        size_t n = two_pass->num_params;
        CHECK(n == 37 * 113 + 113 + 4 * 113 + 113 * 3 + 3, "odd model has %zu params", n);
        two_pass_opt = make(variants[k].name, 0.05f, variants[k].momentum, variants[k].nesterov,
                            variants[k].decay, n);
        fused_opt = make(variants[k].name, 0.05f, variants[k].momentum, variants[k].nesterov,
                         variants[k].decay, n);
        zeros = calloc(n, sizeof *zeros);
        if (!two_pass_opt || !fused_opt || !zeros) goto next;
        fedkd_rng rng = fedkd_rng_stream(11, FEDKD_RNG_TEST, k, 0);
        fill(two_pass->params, n, &rng);
        memcpy(fused->params, two_pass->params, n * sizeof(float));
        for (int step = 0; step < 3; step++) {
            /* Every gradient non-zero, the running statistics' included. */
            fill(two_pass->grads, n, &rng);
            memcpy(fused->grads, two_pass->grads, n * sizeof(float));
            /* Steps 1 and 2 add a term through the hook (ranges of the
             * model cross the hook's chunks), the two-pass side first. */
            fedkd_gradient_hook hook = step > 0 ? add_term : NULL;
            if (hook) add_term(NULL, two_pass, 0, n);
            fedkd_optimizer_step_model(two_pass_opt, two_pass);
            fedkd_model_zero_grad(two_pass);
            fedkd_optimizer_step_model_clear_grads(fused_opt, fused, hook, NULL);
            size_t floats = 0;
            const float *a = fedkd_optimizer_state(two_pass_opt, &floats);
            const float *b = fedkd_optimizer_state(fused_opt, NULL);
            CHECK(memcmp(two_pass->params, fused->params, n * sizeof(float)) == 0,
                  "%s variant %zu step %d: parameters as step + zero_grad", variants[k].name, k,
                  step);
            CHECK(memcmp(a, b, floats * sizeof *a) == 0,
                  "%s variant %zu step %d: optimizer state as step + zero_grad",
                  variants[k].name, k, step);
            CHECK(memcmp(fused->grads, zeros, n * sizeof(float)) == 0,
                  "%s variant %zu step %d: every gradient +0.0f after the clearing step",
                  variants[k].name, k, step);
        }
    next:
        fedkd_optimizer_destroy(&two_pass_opt);
        fedkd_optimizer_destroy(&fused_opt);
        fedkd_model_destroy(&two_pass);
        fedkd_model_destroy(&fused);
        free(zeros);
    }
}

/* fedkd_optimizer_backward_step against fedkd_model_backward then the
 * clearing step, bit for bit (parameters, state, gradients left zero), over
 * five training steps (the first a fresh one, which writes the velocity
 * without reading it): first
 * dense layers whose rows and columns leave tails to the vector kernel's
 * tiles of 4 x 64 (203 x 137, 113 x 37, 64 x 80 behind a flatten), one
 * followed by a batchnorm whose running statistics the step skips; SGD
 * plain, with momentum and decay, Nesterov, and Adam (which does not
 * fuse); the vector kernel and its one-weight-at-a-time loop
 * (FEDKD_DENSE_SGD_PLAIN). */
static void check_backward_step(void)
{
    enum { BATCH = 7, STEPS = 5 };
    struct {
        fedkd_shape input;
        int units, norm;
    } models[] = {{{137, 1, 1}, 203, 0}, {{37, 1, 1}, 113, 1}, {{1, 8, 10}, 64, 0}};
    const struct {
        const char *name;
        float momentum, decay;
        int nesterov;
    } variants[] = {{"sgd", 0.0f, 0.0f, 0}, {"sgd", 0.9f, 1e-3f, 0}, {"sgd", 0.9f, 1e-3f, 1},
                    {"adam", 0.0f, 0.0f, 0}};
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        fedkd_model_spec spec;
        memset(&spec, 0, sizeof spec);
        snprintf(spec.name, sizeof spec.name, "fused%zu", m);
        spec.input = models[m].input;
        spec.num_classes = 5;
        if (models[m].input.height > 1) spec.layers[spec.num_layers++] = test_layer("flatten", 0);
        spec.layers[spec.num_layers++] = test_layer("dense", models[m].units);
        if (models[m].norm) spec.layers[spec.num_layers++] = test_layer("batchnorm", 0);
        spec.layers[spec.num_layers++] = test_layer("relu", 0);
        spec.layers[spec.num_layers++] = test_layer("dense", 5);
        size_t features = fedkd_shape_size(spec.input);
        for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++)
            for (int plain = 0; plain < 2; plain++) {
                fedkd_model *two_pass = NULL, *fused = NULL;
                fedkd_optimizer *two_pass_opt = NULL, *fused_opt = NULL;
                float *input = malloc(BATCH * features * sizeof *input), *zeros = NULL;
                float d_logits[BATCH * 5];
                int32_t labels[BATCH];
                if (fedkd_model_create(&two_pass, &spec, BATCH) != FEDKD_OK ||
                    fedkd_model_create(&fused, &spec, BATCH) != FEDKD_OK || !input) {
                    CHECK(0, "create: %s", fedkd_error_message());
                    goto next;
                }
                size_t n = two_pass->num_params;
                two_pass_opt = make(variants[k].name, 0.05f, variants[k].momentum,
                                    variants[k].nesterov, variants[k].decay, n);
                fused_opt = make(variants[k].name, 0.05f, variants[k].momentum,
                                 variants[k].nesterov, variants[k].decay, n);
                zeros = calloc(n, sizeof *zeros);
                if (!two_pass_opt || !fused_opt || !zeros) goto next;
                fedkd_model_init_params(two_pass, 5, m);
                memcpy(fused->params, two_pass->params, n * sizeof(float));
                two_pass->training = fused->training = 1;
                fedkd_nn_dense_sgd_mode = plain ? FEDKD_DENSE_SGD_PLAIN : FEDKD_DENSE_SGD_AUTO;
                fedkd_rng rng = fedkd_rng_stream(17, FEDKD_RNG_TEST, m, k);
                for (int step = 0; step < STEPS; step++) {
                    fill(input, BATCH * features, &rng);
                    for (int i = 0; i < BATCH; i++)
                        labels[i] = (int32_t)fedkd_rng_below(&rng, (uint32_t)spec.num_classes);
                    const float *z = fedkd_model_forward(two_pass, input, BATCH);
                    fedkd_loss_cross_entropy(z, labels, BATCH, 5, d_logits);
                    fedkd_model_backward(two_pass, d_logits, BATCH);
                    fedkd_optimizer_step_model_clear_grads(two_pass_opt, two_pass, NULL, NULL);
                    z = fedkd_model_forward(fused, input, BATCH);
                    fedkd_loss_cross_entropy(z, labels, BATCH, 5, d_logits);
                    fedkd_optimizer_backward_step(fused_opt, fused, d_logits, BATCH, NULL, NULL);
                    size_t floats = 0;
                    const float *a = fedkd_optimizer_state(two_pass_opt, &floats);
                    const float *b = fedkd_optimizer_state(fused_opt, NULL);
                    CHECK(memcmp(two_pass->params, fused->params, n * sizeof(float)) == 0,
                          "model %zu, %s variant %zu%s, step %d: parameters as backward + step",
                          m, variants[k].name, k, plain ? " (plain loop)" : "", step);
                    CHECK(memcmp(a, b, floats * sizeof *a) == 0,
                          "model %zu, %s variant %zu%s, step %d: optimizer state as backward + "
                          "step", m, variants[k].name, k, plain ? " (plain loop)" : "", step);
                    CHECK(memcmp(fused->grads, zeros, n * sizeof(float)) == 0 && fused->grads_zero,
                          "model %zu, %s variant %zu, step %d: every gradient zero after", m,
                          variants[k].name, k, step);
                }
            next:
                fedkd_nn_dense_sgd_mode = FEDKD_DENSE_SGD_AUTO;
                fedkd_optimizer_destroy(&two_pass_opt);
                fedkd_optimizer_destroy(&fused_opt);
                fedkd_model_destroy(&two_pass);
                fedkd_model_destroy(&fused);
                free(input);
                free(zeros);
            }
    }
}

/* A model input -> dense(units) -> relu -> dense(5) at batch `batch`. */
static fedkd_model *first_dense_model(int in, int units, int batch)
{
    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "first%dx%d", units, in);
    spec.input = (fedkd_shape){in, 1, 1};
    spec.num_classes = 5;
    spec.layers[spec.num_layers++] = test_layer("dense", units);
    spec.layers[spec.num_layers++] = test_layer("relu", 0);
    spec.layers[spec.num_layers++] = test_layer("dense", 5);
    fedkd_model *model = NULL;
    if (fedkd_model_create(&model, &spec, batch) != FEDKD_OK) {
        CHECK(0, "create %s: %s", spec.name, fedkd_error_message());
        return NULL;
    }
    fedkd_model_init_params(model, 3, (uint64_t)in);
    model->training = 1;
    return model;
}

/* The first dense layer's weight gradient from the backward pass against
 * each weight's products summed in batch order by fused multiply-adds from
 * 0, bit for bit, whatever the BLAS (the vector kernel, its one-weight-at-
 * a-time loop); through the BLAS (FEDKD_DENSE_SGD_OFF) within rounding.
 * Shapes of the mlp (784 -> 200, batch 64), with tails (137 -> 203, batch
 * 61) and with a batch of one. */
static void check_first_layer_grad(void)
{
    const struct {
        int in, units, batch;
    } shapes[] = {{784, 200, 64}, {137, 203, 61}, {48, 8, 1}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int in = shapes[k].in, units = shapes[k].units, batch = shapes[k].batch;
        fedkd_model *model = first_dense_model(in, units, batch);
        size_t weights = (size_t)units * (size_t)in;
        float *input = malloc((size_t)batch * (size_t)in * sizeof *input);
        float *expected = malloc(weights * sizeof *expected);
        float *d_output = malloc((size_t)batch * (size_t)units * sizeof *d_output);
        float *d_logits = malloc((size_t)batch * 5 * sizeof *d_logits);
        int32_t *labels = malloc((size_t)batch * sizeof *labels);
        if (!model || !input || !expected || !d_output || !d_logits || !labels) goto next;
        fedkd_rng rng = fedkd_rng_stream(23, FEDKD_RNG_TEST, k, 0);
        fill(input, (size_t)batch * (size_t)in, &rng);
        for (int i = 0; i < batch; i++) labels[i] = (int32_t)fedkd_rng_below(&rng, 5);
        const float *z = fedkd_model_forward(model, input, batch);
        fedkd_loss_cross_entropy(z, labels, batch, 5, d_logits);
        memcpy(d_output, fedkd_nn_backward_above(model, d_logits, batch, 0),
               (size_t)batch * (size_t)units * sizeof *d_output);
        int nonzero = 0;
        for (int o = 0; o < units; o++)
            for (int i = 0; i < in; i++) {
                float g = 0.0f;
                for (int n = 0; n < batch; n++)
                    g = fmaf(d_output[(size_t)n * (size_t)units + (size_t)o],
                             input[(size_t)n * (size_t)in + (size_t)i], g);
                expected[(size_t)o * (size_t)in + (size_t)i] = g;
                nonzero += g != 0.0f;
            }
        CHECK(nonzero > 0, "%d x %d: some gradient is not zero", units, in);
        const int modes[] = {FEDKD_DENSE_SGD_AUTO, FEDKD_DENSE_SGD_PLAIN, FEDKD_DENSE_SGD_OFF};
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            fedkd_nn_dense_sgd_mode = modes[m];
            fedkd_model_zero_grad(model);
            fedkd_model_backward(model, d_logits, batch);
            fedkd_nn_dense_sgd_mode = FEDKD_DENSE_SGD_AUTO;
            if (modes[m] != FEDKD_DENSE_SGD_OFF) {
                size_t differ = 0;
                for (size_t w = 0; w < weights; w++)
                    differ += memcmp(&model->grads[w], &expected[w], sizeof(float)) != 0;
                CHECK(differ == 0,
                      "%d x %d, batch %d%s: %zu of %zu weight gradients differ from the "
                      "batch-order sum", units, in, batch,
                      modes[m] == FEDKD_DENSE_SGD_PLAIN ? " (plain loop)" : "", differ, weights);
            } else {
                double worst = 0.0;
                for (size_t w = 0; w < weights; w++) {
                    double d = fabs((double)model->grads[w] - (double)expected[w]);
                    if (d > worst) worst = d;
                }
                CHECK(worst < 1e-5, "%d x %d, batch %d through the BLAS: off by %g", units, in,
                      batch, worst);
            }
        }
    next:
        fedkd_model_destroy(&model);
        free(input);
        free(expected);
        free(d_output);
        free(d_logits);
        free(labels);
    }
}

static void leave_gradients(void *context, fedkd_model *model, size_t begin, size_t end)
{
    (void)model;
    (void)begin;
    (void)end;
    ++*(int *)context;
}

/* A step with a gradient hook does not fuse; with a hook that leaves the
 * gradients alone it must give the fused step's bits (SCAFFOLD with zero
 * control variates is FedAvg). At the mlp's shapes and batch, where the
 * BLAS's own kernels may sum in another order than the fused step: five
 * steps of SGD with momentum, the first a fresh one. */
static void check_hook_same_bits(void)
{
    enum { IN = 784, UNITS = 200, BATCH = 64, STEPS = 5 };
    fedkd_model *plain = first_dense_model(IN, UNITS, BATCH);
    fedkd_model *hooked = first_dense_model(IN, UNITS, BATCH);
    float *input = malloc((size_t)BATCH * IN * sizeof *input);
    float d_logits[BATCH * 5];
    int32_t labels[BATCH];
    fedkd_optimizer *plain_opt = NULL, *hooked_opt = NULL;
    if (!plain || !hooked || !input) goto done;
    size_t n = plain->num_params;
    plain_opt = make("sgd", 0.05f, 0.9f, 0, 1e-4f, n);
    hooked_opt = make("sgd", 0.05f, 0.9f, 0, 1e-4f, n);
    if (!plain_opt || !hooked_opt) goto done;
    fedkd_rng rng = fedkd_rng_stream(29, FEDKD_RNG_TEST, 0, 0);
    int calls = 0;
    for (int step = 0; step < STEPS; step++) {
        fill(input, (size_t)BATCH * IN, &rng);
        for (int i = 0; i < BATCH; i++) labels[i] = (int32_t)fedkd_rng_below(&rng, 5);
        const float *z = fedkd_model_forward(plain, input, BATCH);
        fedkd_loss_cross_entropy(z, labels, BATCH, 5, d_logits);
        fedkd_optimizer_backward_step(plain_opt, plain, d_logits, BATCH, NULL, NULL);
        z = fedkd_model_forward(hooked, input, BATCH);
        fedkd_loss_cross_entropy(z, labels, BATCH, 5, d_logits);
        fedkd_optimizer_backward_step(hooked_opt, hooked, d_logits, BATCH, leave_gradients,
                                      &calls);
        size_t differ = 0;
        for (size_t w = 0; w < n; w++)
            differ += memcmp(&plain->params[w], &hooked->params[w], sizeof(float)) != 0;
        CHECK(differ == 0, "step %d: %zu of %zu parameters differ with a hook that does nothing",
              step, differ, n);
    }
    CHECK(calls >= STEPS, "the hook ran (%d calls)", calls);
done:
    fedkd_optimizer_destroy(&plain_opt);
    fedkd_optimizer_destroy(&hooked_opt);
    fedkd_model_destroy(&plain);
    fedkd_model_destroy(&hooked);
    free(input);
}

/* fedkd_optimizer_backward_step_into against fedkd_model_backward then
 * fedkd_optimizer_step_model_clear_grads_into, bit for bit: a client's
 * first step after a reset (the velocity still holding the previous
 * client's values) from a global model, read in place and never written, and the
 * stepped parameters written into the client's own (fused where SGD's first
 * step after a reset is; Adam, a second step without a reset and a hook do
 * not fuse); then a second step in place. SGD plain, with momentum and
 * decay, Nesterov; the vector kernel and its plain loop. */
static void check_backward_step_into(void)
{
    enum { IN = 137, UNITS = 203, BATCH = 9 };
    const struct {
        const char *name;
        float momentum, decay;
        int nesterov, hook, no_reset;
    } variants[] = {{"sgd", 0.0f, 0.0f, 0, 0, 0},  {"sgd", 0.9f, 1e-3f, 0, 0, 0},
                    {"sgd", 0.9f, 1e-3f, 1, 0, 0}, {"adam", 0.0f, 0.0f, 0, 0, 0},
                    {"sgd", 0.9f, 1e-3f, 0, 1, 0}, {"sgd", 0.9f, 1e-3f, 0, 0, 1}};
    for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++)
        for (int plain = 0; plain < 2; plain++) {
            fedkd_model *a = first_dense_model(IN, UNITS, BATCH);
            fedkd_model *b = first_dense_model(IN, UNITS, BATCH);
            fedkd_optimizer *a_opt = NULL, *b_opt = NULL;
            float *global = NULL, *global_copy = NULL, *input = malloc(BATCH * IN * sizeof(float));
            float d_logits[BATCH * 5];
            int32_t labels[BATCH];
            int calls = 0;
            if (!a || !b || !input) goto next;
            size_t n = a->num_params;
            a_opt = make(variants[k].name, 0.05f, variants[k].momentum, variants[k].nesterov,
                         variants[k].decay, n);
            b_opt = make(variants[k].name, 0.05f, variants[k].momentum, variants[k].nesterov,
                         variants[k].decay, n);
            global = malloc(n * sizeof *global);
            global_copy = malloc(n * sizeof *global_copy);
            if (!a_opt || !b_opt || !global || !global_copy) goto next;
            fedkd_rng rng = fedkd_rng_stream(31, FEDKD_RNG_TEST, k, (uint64_t)plain);
            fill(global, n, &rng);
            memcpy(global_copy, global, n * sizeof *global);
            fill(a->params, n, &rng); /* the client's own, overwritten by the step */
            memcpy(b->params, a->params, n * sizeof(float));
            {
                /* a step in place first (the velocity then holds a previous
                 * client's values), and a reset unless no_reset: then the
                 * step into is not fresh */
                fill(input, BATCH * IN, &rng);
                for (int m = 0; m < 2; m++) {
                    fedkd_model *model = m ? b : a;
                    const float *z = fedkd_model_forward(model, input, BATCH);
                    for (int i = 0; i < BATCH; i++) labels[i] = i % 5;
                    fedkd_loss_cross_entropy(z, labels, BATCH, 5, d_logits);
                    fedkd_model_backward(model, d_logits, BATCH);
                    fedkd_optimizer_step_model_clear_grads(m ? b_opt : a_opt, model, NULL, NULL);
                    if (!variants[k].no_reset) fedkd_optimizer_reset(m ? b_opt : a_opt);
                }
            }
            fedkd_nn_dense_sgd_mode = plain ? FEDKD_DENSE_SGD_PLAIN : FEDKD_DENSE_SGD_AUTO;
            fedkd_gradient_hook hook = variants[k].hook ? leave_gradients : NULL;
            for (int step = 0; step < 2; step++) {
                fill(input, BATCH * IN, &rng);
                for (int i = 0; i < BATCH; i++)
                    labels[i] = (int32_t)fedkd_rng_below(&rng, 5);
                float *own_a = a->params, *own_b = b->params;
                if (step == 0) a->params = b->params = global;
                const float *z = fedkd_model_forward(a, input, BATCH);
                fedkd_loss_cross_entropy(z, labels, BATCH, 5, d_logits);
                fedkd_model_backward(a, d_logits, BATCH);
                if (step == 0)
                    fedkd_optimizer_step_model_clear_grads_into(a_opt, a, own_a, hook, &calls);
                else
                    fedkd_optimizer_step_model_clear_grads(a_opt, a, hook, &calls);
                z = fedkd_model_forward(b, input, BATCH);
                fedkd_loss_cross_entropy(z, labels, BATCH, 5, d_logits);
                if (step == 0)
                    fedkd_optimizer_backward_step_into(b_opt, b, d_logits, BATCH, own_b, hook,
                                                       &calls);
                else
                    fedkd_optimizer_backward_step(b_opt, b, d_logits, BATCH, hook, &calls);
                a->params = own_a;
                b->params = own_b;
                size_t floats = 0;
                const float *sa = fedkd_optimizer_state(a_opt, &floats);
                const float *sb = fedkd_optimizer_state(b_opt, NULL);
                CHECK(memcmp(a->params, b->params, n * sizeof(float)) == 0,
                      "%s variant %zu%s, step %d: parameters as backward + step into",
                      variants[k].name, k, plain ? " (plain loop)" : "", step);
                CHECK(memcmp(sa, sb, floats * sizeof *sa) == 0,
                      "%s variant %zu%s, step %d: optimizer state as backward + step into",
                      variants[k].name, k, plain ? " (plain loop)" : "", step);
                size_t nonzero = 0;
                for (size_t w = 0; w < n; w++) nonzero += b->grads[w] != 0.0f;
                CHECK(nonzero == 0 && b->grads_zero, "%s variant %zu, step %d: %zu gradients "
                      "left", variants[k].name, k, step, nonzero);
                CHECK(memcmp(global, global_copy, n * sizeof *global) == 0,
                      "%s variant %zu, step %d: the global model unchanged", variants[k].name, k,
                      step);
            }
            if (variants[k].hook) CHECK(calls > 0, "variant %zu: the hook ran", k);
        next:
            fedkd_nn_dense_sgd_mode = FEDKD_DENSE_SGD_AUTO;
            fedkd_optimizer_destroy(&a_opt);
            fedkd_optimizer_destroy(&b_opt);
            fedkd_model_destroy(&a);
            fedkd_model_destroy(&b);
            free(global);
            free(global_copy);
            free(input);
        }
}

int main(void)
{
    /* The run under OpenBLAS's Haswell kernels (meson.build) must get them. */
    const char *asked = getenv("OPENBLAS_CORETYPE");
    printf("OpenBLAS kernels: %s (OPENBLAS_CORETYPE %s)\n", fedkd_sgemm_core(),
           asked ? asked : "not set");
    if (asked && strcmp(asked, "Haswell") == 0)
        CHECK(strcmp(fedkd_sgemm_core(), "Haswell") == 0, "OpenBLAS runs %s kernels, not Haswell",
              fedkd_sgemm_core());
    check_sgd_by_hand();
    check_adam_by_hand();
    check_quadratic();
    check_errors();
    check_sgd_vector_loop();
    check_clear_grads();
    check_backward_step();
    check_first_layer_grad();
    check_hook_same_bits();
    check_backward_step_into();
    return test_finish("test_optimizer");
}
