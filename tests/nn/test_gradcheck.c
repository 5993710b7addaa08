/* Central finite differences against the analytic backward pass, for every
 * layer kind (w.r.t. inputs and parameters), every loss, and one whole model.
 *
 * Layers: the scalar is L = sum(output * R) accumulated in double, R fixed
 * random weights, eps = 1e-3. Losses: the loss itself, eps = 1e-2 (losses
 * return a float, so a larger step keeps rounding noise at ~1e-5; the
 * truncation error eps^2/6 * f''' stays below 2e-5 for these smooth
 * functions). An analytic and a numeric derivative agree when
 * |a - n| <= 2e-2 * max(|a|, |n|) or |a - n| <= 1e-3 (layers) / 2e-4 (losses).
 * Inputs avoid kinks: ReLU inputs are at least 0.1 away from 0, maxpool
 * inputs are distinct by at least 0.05, MAE differences are at least 0.05.
 * Normalisation layers are checked in training mode (batch statistics) and
 * in evaluation mode (running statistics, positive variances); a residual
 * block also against its shortcut input, whose gradient goes to d_skip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "fedkd/core/rng.h"
#include "nn/nn_private.h"
#include "test_util.h"

static fedkd_rng rng;

static float uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)fedkd_rng_uniform(&rng);
}

static void fill_uniform(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = uniform(lo, hi);
}

/* Compares one analytic / numeric pair; returns 1 if they disagree. */
static int disagree(double analytic, double numeric, double abs_tol)
{
    double diff = fabs(analytic - numeric);
    return diff > abs_tol && diff > 2e-2 * fmax(fabs(analytic), fabs(numeric));
}

typedef struct layer_case {
    const char *name;
    fedkd_layer_spec spec;
    fedkd_shape input;
    int batch;
    int input_mode; /* 0: uniform(-1, 1); 1: away from 0 (relu); 2: distinct (maxpool) */
    int training;   /* the layer's mode */
    fedkd_shape skip; /* residual: the shape of its body's input */
} layer_case;

static double weighted_sum(const float *out, const float *weights, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)out[i] * (double)weights[i];
    return sum;
}

static void check_layer(const layer_case *c)
{
    const double eps = 1e-3;
    fedkd_layer layer;
    memset(&layer, 0, sizeof layer);
    layer.spec = c->spec;
    layer.kind = fedkd_layer_kind_find(c->spec.kind);
    layer.in_shape = c->input;
    layer.skip_shape = c->skip;
    layer.training = c->training;
    CHECK(layer.kind != NULL, "%s: kind `%s` not found", c->name, c->spec.kind);
    if (!layer.kind) return;
    fedkd_status status = layer.kind->configure(&layer);
    CHECK(status == FEDKD_OK, "%s: configure failed: %s", c->name, fedkd_error_message());
    if (status != FEDKD_OK) return;

    size_t in_count = fedkd_shape_size(layer.in_shape) * (size_t)c->batch;
    size_t out_count = fedkd_shape_size(layer.out_shape) * (size_t)c->batch;
    size_t num_params = layer.num_params;
    size_t scratch_count = layer.kind->scratch_floats(&layer, c->batch);
    float *input = malloc(in_count * sizeof *input);
    float *output = malloc(out_count * sizeof *output);
    float *weights = malloc(out_count * sizeof *weights);
    float *params = malloc((num_params + 1) * sizeof *params);
    float *d_params = malloc((num_params + 1) * sizeof *d_params);
    float *d_params_before = malloc((num_params + 1) * sizeof *d_params_before);
    float *d_input = malloc(in_count * sizeof *d_input);
    float *scratch = malloc((scratch_count + 1) * sizeof *scratch);
    size_t saved_count = layer.kind->saved_floats ? layer.kind->saved_floats(&layer, c->batch) : 0;
    size_t skip_count = fedkd_shape_size(c->skip) * (size_t)c->batch;
    float *saved_buffer = malloc((saved_count + 1) * sizeof *saved_buffer);
    float *skip = malloc((skip_count + 1) * sizeof *skip);
    float *d_skip = malloc((skip_count + 1) * sizeof *d_skip);
    layer.saved = saved_count ? saved_buffer : NULL;
    layer.skip = skip;
    layer.d_skip = d_skip;
    fill_uniform(skip, skip_count, -1.0f, 1.0f);
    for (size_t i = 0; i < skip_count; i++) d_skip[i] = 1e6f;

    if (c->input_mode == 2) {
        /* A shuffled ladder of values 0.05 apart: no ties, and a step of
         * eps cannot change any window's argmax. */
        uint32_t *order = malloc(in_count * sizeof *order);
        for (size_t i = 0; i < in_count; i++) order[i] = (uint32_t)i;
        fedkd_rng_shuffle_u32(&rng, order, in_count);
        for (size_t i = 0; i < in_count; i++) input[i] = -2.0f + 0.05f * (float)order[i];
        free(order);
    } else {
        for (size_t i = 0; i < in_count; i++) {
            input[i] = uniform(-1.0f, 1.0f);
            if (c->input_mode == 1) input[i] = input[i] < 0.0f ? input[i] - 0.1f : input[i] + 0.1f;
        }
    }
    fill_uniform(weights, out_count, -1.0f, 1.0f);
    fill_uniform(params, num_params, -0.5f, 0.5f);
    /* Running statistics: any mean, a variance well above 0. */
    for (size_t i = 0; i < layer.stats_count / 2; i++) {
        params[layer.stats_offset + i] = uniform(-0.5f, 0.5f);
        params[layer.stats_offset + layer.stats_count / 2 + i] = uniform(0.5f, 1.5f);
    }
    /* Backward must ADD into d_params and OVERWRITE d_input. */
    fill_uniform(d_params_before, num_params, -1.0f, 1.0f);
    memcpy(d_params, d_params_before, num_params * sizeof *d_params);
    for (size_t i = 0; i < in_count; i++) d_input[i] = 1e6f;

    layer.kind->forward(&layer, params, input, output, c->batch, scratch);
    layer.kind->backward(&layer, params, input, output, weights, d_input, d_params, c->batch,
                         scratch);

    int bad_input = 0, bad_param = 0;
    double worst = 0.0;
    for (size_t i = 0; i < in_count; i++) {
        float saved = input[i];
        input[i] = (float)((double)saved + eps);
        layer.kind->forward(&layer, params, input, output, c->batch, scratch);
        double plus = weighted_sum(output, weights, out_count);
        input[i] = (float)((double)saved - eps);
        layer.kind->forward(&layer, params, input, output, c->batch, scratch);
        double minus = weighted_sum(output, weights, out_count);
        input[i] = saved;
        double numeric = (plus - minus) / (2.0 * eps);
        if (disagree((double)d_input[i], numeric, 1e-3)) {
            if (bad_input++ < 3)
                fprintf(stderr, "%s: d_input[%zu] analytic %g numeric %g\n", c->name, i,
                        (double)d_input[i], numeric);
        }
        worst = fmax(worst, fabs((double)d_input[i] - numeric));
    }
    for (size_t i = 0; i < num_params; i++) {
        /* Running statistics are not trained: they have no gradient by
         * definition (checked below), though the output of an evaluation
         * pass depends on them. */
        if (i >= layer.stats_offset && i < layer.stats_offset + layer.stats_count) continue;
        float saved = params[i];
        params[i] = (float)((double)saved + eps);
        layer.kind->forward(&layer, params, input, output, c->batch, scratch);
        double plus = weighted_sum(output, weights, out_count);
        params[i] = (float)((double)saved - eps);
        layer.kind->forward(&layer, params, input, output, c->batch, scratch);
        double minus = weighted_sum(output, weights, out_count);
        params[i] = saved;
        double numeric = (plus - minus) / (2.0 * eps);
        double analytic = (double)d_params[i] - (double)d_params_before[i];
        if (disagree(analytic, numeric, 1e-3)) {
            if (bad_param++ < 3)
                fprintf(stderr, "%s: d_params[%zu] analytic %g numeric %g\n", c->name, i,
                        analytic, numeric);
        }
        worst = fmax(worst, fabs(analytic - numeric));
    }
    int bad_skip = 0;
    for (size_t i = 0; i < skip_count; i++) {
        float saved_value = skip[i];
        skip[i] = (float)((double)saved_value + eps);
        layer.kind->forward(&layer, params, input, output, c->batch, scratch);
        double plus = weighted_sum(output, weights, out_count);
        skip[i] = (float)((double)saved_value - eps);
        layer.kind->forward(&layer, params, input, output, c->batch, scratch);
        double minus = weighted_sum(output, weights, out_count);
        skip[i] = saved_value;
        double numeric = (plus - minus) / (2.0 * eps);
        if (disagree((double)d_skip[i], numeric, 1e-3)) {
            if (bad_skip++ < 3)
                fprintf(stderr, "%s: d_skip[%zu] analytic %g numeric %g\n", c->name, i,
                        (double)d_skip[i], numeric);
        }
        worst = fmax(worst, fabs((double)d_skip[i] - numeric));
    }
    /* No gradient may reach the running statistics. */
    for (size_t i = 0; i < layer.stats_count; i++)
        CHECK(d_params[layer.stats_offset + i] == d_params_before[layer.stats_offset + i],
              "%s: running statistic %zu got a gradient", c->name, i);
    CHECK(bad_skip == 0, "%s: %d of %zu shortcut gradients disagree", c->name, bad_skip,
          skip_count);
    CHECK(bad_input == 0, "%s: %d of %zu input gradients disagree", c->name, bad_input, in_count);
    CHECK(bad_param == 0, "%s: %d of %zu parameter gradients disagree", c->name, bad_param,
          num_params);
    printf("%-28s inputs %4zu params %4zu worst abs diff %.2e\n", c->name, in_count, num_params,
           worst);

    free(input);
    free(output);
    free(weights);
    free(params);
    free(d_params);
    free(d_params_before);
    free(d_input);
    free(scratch);
    free(saved_buffer);
    free(skip);
    free(d_skip);
}

static fedkd_layer_spec layer_spec(const char *kind, int units, int filters, int kernel,
                                   int stride, int padding)
{
    fedkd_layer_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.kind, sizeof spec.kind, "%s", kind);
    spec.units = units;
    spec.filters = filters;
    spec.kernel = kernel;
    spec.stride = stride;
    spec.padding = padding;
    return spec;
}

static fedkd_layer_spec global_pool(void)
{
    fedkd_layer_spec spec = layer_spec("avgpool", 0, 0, 0, 0, 0);
    spec.global = 1;
    return spec;
}

static fedkd_layer_spec group_norm(int groups)
{
    fedkd_layer_spec spec = layer_spec("groupnorm", 0, 0, 0, 0, 0);
    spec.groups = groups;
    return spec;
}

static fedkd_layer_spec residual(int body, fedkd_projection projection)
{
    fedkd_layer_spec spec = layer_spec("residual", 0, 0, 0, 0, 0);
    spec.body = body;
    spec.projection = projection;
    return spec;
}

/* The first of equal values in a window takes the whole gradient. */
static void check_maxpool_ties(void)
{
    fedkd_layer layer;
    memset(&layer, 0, sizeof layer);
    layer.spec = layer_spec("maxpool", 0, 0, 2, 0, 0);
    layer.kind = fedkd_layer_kind_find("maxpool");
    layer.in_shape = (fedkd_shape){1, 2, 2};
    CHECK(layer.kind->configure(&layer) == FEDKD_OK, "maxpool 2 on 2x2");
    const float input[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    float output[1], d_output[1] = {3.0f}, d_input[4];
    layer.kind->forward(&layer, NULL, input, output, 1, NULL);
    layer.kind->backward(&layer, NULL, input, output, d_output, d_input, NULL, 1, NULL);
    CHECK(output[0] == 0.5f, "maxpool of ties: %g", (double)output[0]);
    CHECK(d_input[0] == 3.0f && d_input[1] == 0.0f && d_input[2] == 0.0f && d_input[3] == 0.0f,
          "tie gradient goes to the first position: %g %g %g %g", (double)d_input[0],
          (double)d_input[1], (double)d_input[2], (double)d_input[3]);
}

/* ---- losses ---------------------------------------------------------------- */

typedef float (*loss_function)(const float *logits, float *d_logits, const void *context);

typedef struct kd_context {
    const float *teacher;
    const int32_t *labels;
    int batch, classes;
    float temperature, weight;
} kd_context;

static float kd_loss(const float *logits, float *d_logits, const void *context)
{
    const kd_context *k = context;
    return fedkd_loss_kd(logits, k->teacher, k->labels, k->batch, k->classes, k->temperature,
                         k->weight, d_logits);
}

static float ce_loss(const float *logits, float *d_logits, const void *context)
{
    const kd_context *k = context;
    return fedkd_loss_cross_entropy(logits, k->labels, k->batch, k->classes, d_logits);
}

static float mae_loss(const float *logits, float *d_logits, const void *context)
{
    const kd_context *k = context;
    return fedkd_loss_logit_mae(logits, k->teacher, k->batch, k->classes, d_logits);
}

static void check_loss(const char *name, loss_function loss, const void *context, float *logits,
                       size_t count)
{
    const double eps = 1e-2;
    float *grad = malloc(count * sizeof *grad);
    float *unused = malloc(count * sizeof *unused);
    for (size_t i = 0; i < count; i++) grad[i] = 1e6f; /* must be overwritten */
    loss(logits, grad, context);
    int bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        float saved = logits[i];
        logits[i] = (float)((double)saved + eps);
        double plus = (double)loss(logits, unused, context);
        logits[i] = (float)((double)saved - eps);
        double minus = (double)loss(logits, unused, context);
        logits[i] = saved;
        double numeric = (plus - minus) / (2.0 * eps);
        if (disagree((double)grad[i], numeric, 2e-4)) {
            if (bad++ < 3)
                fprintf(stderr, "%s: d_logits[%zu] analytic %g numeric %g\n", name, i,
                        (double)grad[i], numeric);
        }
        worst = fmax(worst, fabs((double)grad[i] - numeric));
    }
    CHECK(bad == 0, "%s: %d of %zu logit gradients disagree", name, bad, count);
    printf("%-28s logits %4zu worst abs diff %.2e\n", name, count, worst);
    free(grad);
    free(unused);
}

static void check_losses(void)
{
    enum { batch = 3, classes = 5, count = batch * classes };
    float logits[count], teacher_logits[count], teacher[count];
    int32_t labels[batch] = {0, 3, 4};
    fill_uniform(logits, count, -2.0f, 2.0f);
    fill_uniform(teacher_logits, count, -3.0f, 3.0f);

    kd_context context = {teacher, labels, batch, classes, 1.0f, 0.0f};
    check_loss("loss cross-entropy", ce_loss, &context, logits, count);

    const float temperatures[] = {1.0f, 2.0f, 4.0f, 8.0f};
    const float weights[] = {0.0f, 0.3f, 1.0f};
    for (int t = 0; t < 4; t++) {
        fedkd_softmax(teacher_logits, teacher, batch, classes, temperatures[t]);
        /* A teacher that gives one class probability 0 (its t log t term is 0). */
        teacher[classes + 1] += teacher[classes + 2];
        teacher[classes + 2] = 0.0f;
        for (int w = 0; w < 3; w++) {
            char name[64];
            snprintf(name, sizeof name, "loss kd T=%g w=%g", (double)temperatures[t],
                     (double)weights[w]);
            context.temperature = temperatures[t];
            context.weight = weights[w];
            context.labels = weights[w] == 1.0f ? NULL : labels;
            check_loss(name, kd_loss, &context, logits, count);
        }
    }

    /* MAE: targets at least 0.05 away from the logits. */
    for (size_t i = 0; i < count; i++) {
        float offset = uniform(0.05f, 1.0f);
        teacher[i] = logits[i] + (i % 2 ? offset : -offset);
    }
    context.labels = labels;
    check_loss("loss logit mae", mae_loss, &context, logits, count);
}

/* ---- a whole model ------------------------------------------------------ */

/* Which side of every kink the model is on: ReLU signs and maxpool argmax
 * positions. A finite difference is valid only when the signature of both
 * probes matches the base point. */
static size_t kink_signature(const fedkd_model *model, int batch, int32_t *signature)
{
    size_t n = 0;
    for (int l = 0; l < model->num_layers; l++) {
        const fedkd_layer *layer = &model->layers[l];
        const float *in = model->activations[l];
        if (layer->kind == fedkd_layer_kind_find("relu")) {
            size_t count = fedkd_shape_size(layer->in_shape) * (size_t)batch;
            for (size_t i = 0; i < count; i++) signature[n++] = in[i] > 0.0f;
        } else if (layer->kind == fedkd_layer_kind_find("maxpool")) {
            fedkd_shape s = layer->in_shape, o = layer->out_shape;
            int k = layer->spec.kernel;
            for (int p = 0; p < batch * s.channels; p++)
                for (int oh = 0; oh < o.height; oh++)
                    for (int ow = 0; ow < o.width; ow++) {
                        int best = 0;
                        float best_value = -INFINITY;
                        for (int i = 0; i < k; i++)
                            for (int j = 0; j < k; j++) {
                                float v = in[(size_t)p * (size_t)(s.height * s.width) +
                                             (size_t)((oh * k + i) * s.width + ow * k + j)];
                                if (v > best_value) {
                                    best_value = v;
                                    best = i * k + j;
                                }
                            }
                        signature[n++] = best;
                    }
        }
    }
    return n;
}

static double model_loss(fedkd_model *model, const float *input, const float *weights, int batch,
                         int32_t *signature)
{
    const float *logits = fedkd_model_forward(model, input, batch);
    kink_signature(model, batch, signature);
    return weighted_sum(logits, weights, (size_t)batch * (size_t)fedkd_model_num_classes(model));
}

static void check_model(void)
{
    enum { batch = 3 };
    const double eps = 1e-3;
    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "gradcheck");
    spec.input = (fedkd_shape){2, 6, 6};
    spec.num_classes = 4;
    spec.layers[spec.num_layers++] = layer_spec("conv2d", 0, 3, 3, 1, 1);
    spec.layers[spec.num_layers++] = layer_spec("relu", 0, 0, 0, 0, 0);
    spec.layers[spec.num_layers++] = layer_spec("maxpool", 0, 0, 2, 0, 0);
    spec.layers[spec.num_layers++] = layer_spec("flatten", 0, 0, 0, 0, 0);
    spec.layers[spec.num_layers++] = layer_spec("dense", 4, 0, 0, 0, 0);
    fedkd_model *model = NULL;
    fedkd_status status = fedkd_model_create(&model, &spec, batch);
    CHECK(status == FEDKD_OK, "model create: %s", fedkd_error_message());
    if (status != FEDKD_OK) return;
    fedkd_model_init_params(model, 7, 0);

    size_t in_count = fedkd_shape_size(spec.input) * batch;
    size_t out_count = (size_t)batch * 4;
    float *input = malloc(in_count * sizeof *input);
    float *weights = malloc(out_count * sizeof *weights);
    int32_t *base_signature = malloc(4096 * sizeof *base_signature);
    int32_t *probe_signature = malloc(4096 * sizeof *probe_signature);
    fill_uniform(input, in_count, -1.0f, 1.0f);
    fill_uniform(weights, out_count, -1.0f, 1.0f);

    model_loss(model, input, weights, batch, base_signature);
    size_t signature_length = kink_signature(model, batch, base_signature);
    CHECK(signature_length < 4096, "signature fits");
    fedkd_model_zero_grad(model);
    fedkd_model_backward(model, weights, batch);

    int bad = 0, skipped = 0, checked = 0;
    for (size_t i = 0; i < model->num_params; i++) {
        float saved = model->params[i];
        model->params[i] = (float)((double)saved + eps);
        double plus = model_loss(model, input, weights, batch, probe_signature);
        int crossed = memcmp(base_signature, probe_signature,
                             signature_length * sizeof *probe_signature) != 0;
        model->params[i] = (float)((double)saved - eps);
        double minus = model_loss(model, input, weights, batch, probe_signature);
        crossed |= memcmp(base_signature, probe_signature,
                          signature_length * sizeof *probe_signature) != 0;
        model->params[i] = saved;
        if (crossed) {
            skipped++;
            continue;
        }
        checked++;
        double numeric = (plus - minus) / (2.0 * eps);
        if (disagree((double)model->grads[i], numeric, 1e-3)) {
            if (bad++ < 3)
                fprintf(stderr, "model: grads[%zu] analytic %g numeric %g\n", i,
                        (double)model->grads[i], numeric);
        }
    }
    CHECK(bad == 0, "model: %d of %d parameter gradients disagree", bad, checked);
    /* Kinks are rare at this step size; many skips would hide a broken check. */
    CHECK(skipped * 20 <= (int)model->num_params, "model: %d of %zu probes crossed a kink",
          skipped, model->num_params);
    printf("%-28s params %4zu checked %d skipped at kinks %d\n", "model conv-relu-pool-dense",
           model->num_params, checked, skipped);

    free(input);
    free(weights);
    free(base_signature);
    free(probe_signature);
    fedkd_model_destroy(&model);
    CHECK(model == NULL, "destroy clears the pointer");
}

int main(void)
{
    rng = fedkd_rng_stream(2, FEDKD_RNG_TEST, 0, 0);
    const layer_case cases[] = {
        {"dense 2x3x1 -> 4", layer_spec("dense", 4, 0, 0, 0, 0), {2, 3, 1}, 3, 0, 0, {0, 0, 0}},
        {"dense 7 -> 1", layer_spec("dense", 1, 0, 0, 0, 0), {7, 1, 1}, 2, 0, 0, {0, 0, 0}},
        {"conv2d k3 s1 p1", layer_spec("conv2d", 0, 3, 3, 1, 1), {2, 6, 7}, 2, 0, 0, {0, 0, 0}},
        {"conv2d k3 s2 p1", layer_spec("conv2d", 0, 3, 3, 2, 1), {2, 7, 6}, 2, 0, 0, {0, 0, 0}},
        {"conv2d k2 s2 p0", layer_spec("conv2d", 0, 2, 2, 2, 0), {3, 5, 5}, 2, 0, 0, {0, 0, 0}},
        {"conv2d k3 s1 p0", layer_spec("conv2d", 0, 2, 3, 0, 0), {1, 5, 4}, 2, 0, 0, {0, 0, 0}},
        /* 16 filters, stride 1: vectorised over the filters (conv_filters.c) */
        {"conv2d 16 filters k3 s1 p1", layer_spec("conv2d", 0, 16, 3, 1, 1), {2, 5, 6}, 2, 0, 0,
         {0, 0, 0}},
        {"maxpool k2", layer_spec("maxpool", 0, 0, 2, 0, 0), {2, 6, 6}, 2, 2, 0, {0, 0, 0}},
        {"maxpool k3 s2 (overlap)", layer_spec("maxpool", 0, 0, 3, 2, 0), {2, 7, 7}, 2, 2, 0,
         {0, 0, 0}},
        {"maxpool k2 odd input", layer_spec("maxpool", 0, 0, 2, 0, 0), {1, 5, 7}, 2, 2, 0,
         {0, 0, 0}},
        {"relu", layer_spec("relu", 0, 0, 0, 0, 0), {3, 4, 4}, 2, 1, 0, {0, 0, 0}},
        {"flatten", layer_spec("flatten", 0, 0, 0, 0, 0), {2, 3, 3}, 2, 0, 0, {0, 0, 0}},
        {"avgpool k2", layer_spec("avgpool", 0, 0, 2, 0, 0), {2, 5, 6}, 2, 0, 0, {0, 0, 0}},
        {"avgpool k3 s2 (overlap)", layer_spec("avgpool", 0, 0, 3, 2, 0), {2, 7, 7}, 2, 0, 0,
         {0, 0, 0}},
        {"avgpool global", global_pool(), {3, 4, 5}, 2, 0, 0, {0, 0, 0}},
        {"batchnorm conv, training", layer_spec("batchnorm", 0, 0, 0, 0, 0), {3, 3, 4}, 2, 0, 1,
         {0, 0, 0}},
        {"batchnorm flat, training", layer_spec("batchnorm", 0, 0, 0, 0, 0), {5, 1, 1}, 4, 0, 1,
         {0, 0, 0}},
        {"batchnorm conv, evaluation", layer_spec("batchnorm", 0, 0, 0, 0, 0), {3, 3, 4}, 2, 0, 0,
         {0, 0, 0}},
        {"groupnorm 2 groups", group_norm(2), {4, 3, 3}, 2, 0, 0, {0, 0, 0}},
        {"groupnorm 1 group, flat", group_norm(1), {6, 1, 1}, 3, 0, 0, {0, 0, 0}},
        {"residual identity", residual(2, FEDKD_PROJECTION_NONE), {3, 4, 4}, 2, 0, 1, {3, 4, 4}},
        {"residual conv s2", residual(2, FEDKD_PROJECTION_CONV), {4, 3, 3}, 2, 0, 1, {2, 5, 5}},
        {"residual conv-bn s2, train", residual(2, FEDKD_PROJECTION_CONV_BATCHNORM), {4, 3, 3}, 3,
         0, 1, {2, 6, 6}},
        {"residual conv-bn, evaluation", residual(2, FEDKD_PROJECTION_CONV_BATCHNORM), {4, 3, 3},
         2, 0, 0, {2, 3, 3}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_layer(&cases[i]);

    /* Every kind in the table is covered above. */
    for (const fedkd_layer_kind *const *kind = fedkd_layer_kinds; *kind; kind++) {
        int covered = 0;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            covered |= strcmp(cases[i].spec.kind, (*kind)->name) == 0;
        CHECK(covered, "layer kind `%s` has no gradient check", (*kind)->name);
    }

    check_maxpool_ties();
    check_losses();
    check_model();
    return test_finish("test_gradcheck");
}
