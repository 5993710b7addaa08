/* maxpool and relu, forward and backward, against loops written from the
 * definition: the window's maximum, its gradient routed to the first maximum
 * in row-major order (added up where windows overlap), 0 for inputs in no
 * window; a relu fused into the 2x2 / 2 maxpool after it against the two
 * references one after the other, layer by layer and in a whole model.
 * Inputs take few distinct values so that ties are common. No arithmetic
 * happens outside the overlapping sums, which the reference adds in the same
 * order, so results must be equal bit for bit; d_input starts full of stale
 * values that must not survive. */
#include <stdlib.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "fedkd/core/rng.h"
#include "test_util.h"

static fedkd_rng rng;

static void pool_reference(int batch, fedkd_shape in, int k, int stride, const float *input,
                           const float *d_output, float *output, float *d_input)
{
    int out_h = (in.height - k) / stride + 1, out_w = (in.width - k) / stride + 1;
    size_t in_plane = (size_t)in.height * (size_t)in.width;
    memset(d_input, 0, (size_t)batch * (size_t)in.channels * in_plane * sizeof *d_input);
    for (int p = 0; p < batch * in.channels; p++)
        for (int oh = 0; oh < out_h; oh++)
            for (int ow = 0; ow < out_w; ow++) {
                int best_y = oh * stride, best_x = ow * stride;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        int y = oh * stride + i, x = ow * stride + j;
                        if (input[(size_t)p * in_plane + (size_t)(y * in.width + x)] >
                            input[(size_t)p * in_plane + (size_t)(best_y * in.width + best_x)]) {
                            best_y = y;
                            best_x = x;
                        }
                    }
                size_t o = ((size_t)p * (size_t)out_h + (size_t)oh) * (size_t)out_w + (size_t)ow;
                size_t at = (size_t)p * in_plane + (size_t)(best_y * in.width + best_x);
                output[o] = input[at];
                d_input[at] += d_output[o];
            }
}

/* Six levels, one of them -0: a window holding -0 and +0 ties, and the
 * first of them must be the one kept (same value, different bits). */
static float level(void)
{
    int step = (int)(fedkd_rng_uniform(&rng) * 6.0) - 3;
    return step == -3 ? -0.0f : (float)step * 0.5f;
}

/* 1 while check_pool draws NaN for about one input in eight (forward only:
 * no input equals a NaN maximum, so its gradient has nowhere to go). */
static int with_nan = 0;

static void check_pool(int batch, fedkd_shape in, int k, int stride)
{
    char what[96];
    snprintf(what, sizeof what, "maxpool k%d s%d on %dx%dx%d batch %d%s", k, stride,
             in.channels, in.height, in.width, batch, with_nan ? " with NaN" : "");
    fedkd_layer layer;
    memset(&layer, 0, sizeof layer);
    snprintf(layer.spec.kind, sizeof layer.spec.kind, "maxpool");
    layer.spec.kernel = k;
    layer.spec.stride = stride == k ? 0 : stride;
    layer.kind = fedkd_layer_kind_find("maxpool");
    layer.in_shape = in;
    if (layer.kind->configure(&layer) != FEDKD_OK) {
        CHECK(0, "%s: configure: %s", what, fedkd_error_message());
        return;
    }
    size_t in_count = fedkd_shape_size(in) * (size_t)batch;
    size_t out_count = fedkd_shape_size(layer.out_shape) * (size_t)batch;
    float *input = malloc(in_count * sizeof *input), *d_input = malloc(in_count * sizeof *input);
    float *ref_d_input = malloc(in_count * sizeof *input);
    float *output = malloc(out_count * sizeof *output), *d_output = malloc(out_count * sizeof *output);
    float *ref_output = malloc(out_count * sizeof *output);
    for (size_t i = 0; i < in_count; i++) {
        input[i] = level();
        if (with_nan && fedkd_rng_uniform(&rng) < 0.125) input[i] = NAN;
        d_input[i] = 1e7f;
    }
    for (size_t i = 0; i < out_count; i++) d_output[i] = (float)(fedkd_rng_uniform(&rng) + 0.5);
    pool_reference(batch, in, k, stride, input, d_output, ref_output, ref_d_input);
    layer.kind->forward(&layer, NULL, input, output, batch, NULL);
    layer.kind->backward(&layer, NULL, input, output, d_output, d_input, NULL, batch, NULL);
    int bad_out = 0, bad_in = 0;
    for (size_t i = 0; i < out_count; i++) bad_out += memcmp(&output[i], &ref_output[i], 4) != 0;
    for (size_t i = 0; i < in_count; i++) bad_in += memcmp(&d_input[i], &ref_d_input[i], 4) != 0;
    CHECK(bad_out == 0, "%s: %d of %zu outputs differ", what, bad_out, out_count);
    CHECK(with_nan || bad_in == 0, "%s: %d of %zu input gradients differ", what, bad_in,
          in_count);
    free(input);
    free(d_input);
    free(ref_d_input);
    free(output);
    free(d_output);
    free(ref_output);
}

static void check_relu(size_t count)
{
    fedkd_layer layer;
    memset(&layer, 0, sizeof layer);
    snprintf(layer.spec.kind, sizeof layer.spec.kind, "relu");
    layer.kind = fedkd_layer_kind_find("relu");
    layer.in_shape = (fedkd_shape){(int)count, 1, 1};
    CHECK(layer.kind->configure(&layer) == FEDKD_OK, "relu configure");
    float *input = malloc(2 * count * sizeof *input), *output = malloc(2 * count * sizeof *input);
    float *d_output = malloc(2 * count * sizeof *input), *d_input = malloc(2 * count * sizeof *input);
    for (size_t i = 0; i < 2 * count; i++) {
        input[i] = level();
        d_output[i] = (float)(fedkd_rng_uniform(&rng) - 0.5);
        d_input[i] = 1e7f;
    }
    layer.kind->forward(&layer, NULL, input, output, 2, NULL);
    layer.kind->backward(&layer, NULL, input, output, d_output, d_input, NULL, 2, NULL);
    int bad = 0;
    for (size_t i = 0; i < 2 * count; i++) {
        float expected_out = input[i] > 0.0f ? input[i] : 0.0f;
        float expected_d = input[i] > 0.0f ? d_output[i] : 0.0f;
        bad += memcmp(&output[i], &expected_out, 4) != 0 || memcmp(&d_input[i], &expected_d, 4) != 0;
    }
    CHECK(bad == 0, "relu on %zu values: %d differ", 2 * count, bad);
    free(input);
    free(output);
    free(d_output);
    free(d_input);
}

/* A relu then a 2x2 / 2 maxpool as a model builds them (relu_fused, the
 * relu's output aliasing its input), run as the model runs them (the relu's
 * forward, then the pool's in place; the pool's backward, then the relu's,
 * which the model skips) against the relu reference then pool_reference.
 * NaN, -0 and negative inputs all go to +0 before the pool sees them, so the
 * input gradients must match with NaN too. */
static void check_fused(int batch, fedkd_shape in, int nan)
{
    char what[96];
    snprintf(what, sizeof what, "relu + maxpool 2 on %dx%dx%d batch %d%s", in.channels,
             in.height, in.width, batch, nan ? " with NaN" : "");
    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.input = in;
    spec.num_classes = in.channels * (in.height / 2) * (in.width / 2);
    snprintf(spec.layers[0].kind, sizeof spec.layers[0].kind, "relu");
    snprintf(spec.layers[1].kind, sizeof spec.layers[1].kind, "maxpool");
    spec.layers[1].kernel = 2;
    spec.num_layers = 2;
    fedkd_model *model = NULL;
    if (fedkd_model_create(&model, &spec, batch) != FEDKD_OK) {
        CHECK(0, "%s: model: %s", what, fedkd_error_message());
        return;
    }
    const fedkd_layer *relu = &model->layers[0], *pool = &model->layers[1];
    CHECK(relu->relu_fused && pool->relu_fused, "%s: not fused", what);
    CHECK(model->activations[0] == model->activations[1], "%s: relu output not aliased", what);
    size_t in_count = fedkd_shape_size(in) * (size_t)batch;
    size_t out_count = (size_t)spec.num_classes * (size_t)batch;
    float *input = calloc(in_count, sizeof *input), *rectified = calloc(in_count, sizeof *input);
    float *values = malloc(in_count * sizeof *input), *d_middle = malloc(in_count * sizeof *input);
    float *d_input = malloc(in_count * sizeof *input);
    float *ref_d_pool = malloc(in_count * sizeof *input);
    float *ref_d_input = malloc(in_count * sizeof *input);
    float *output = malloc(out_count * sizeof *output);
    float *d_output = malloc(out_count * sizeof *output);
    float *ref_output = malloc(out_count * sizeof *output);
    for (size_t i = 0; i < in_count; i++) {
        input[i] = level();
        if (nan && fedkd_rng_uniform(&rng) < 0.125) input[i] = NAN;
        rectified[i] = input[i] > 0.0f ? input[i] : 0.0f;
        d_middle[i] = d_input[i] = 1e7f;
    }
    for (size_t i = 0; i < out_count; i++) d_output[i] = (float)(fedkd_rng_uniform(&rng) - 0.25);
    pool_reference(batch, in, 2, 2, rectified, d_output, ref_output, ref_d_pool);
    for (size_t i = 0; i < in_count; i++)
        ref_d_input[i] = rectified[i] > 0.0f ? ref_d_pool[i] : 0.0f;

    memcpy(values, input, in_count * sizeof *values);
    relu->kind->forward(relu, NULL, values, values, batch, NULL);
    pool->kind->forward(pool, NULL, values, output, batch, NULL);
    pool->kind->backward(pool, NULL, values, output, d_output, d_middle, NULL, batch, NULL);
    relu->kind->backward(relu, NULL, values, values, d_middle, d_input, NULL, batch, NULL);
    int bad_out = 0, bad_relu = 0, bad_middle = 0, bad_in = 0;
    for (size_t i = 0; i < out_count; i++) bad_out += memcmp(&output[i], &ref_output[i], 4) != 0;
    for (size_t i = 0; i < in_count; i++) {
        bad_relu += memcmp(&values[i], &rectified[i], 4) != 0;
        bad_middle += memcmp(&d_middle[i], &ref_d_input[i], 4) != 0;
        bad_in += memcmp(&d_input[i], &ref_d_input[i], 4) != 0;
    }
    CHECK(bad_out == 0, "%s: %d of %zu outputs differ", what, bad_out, out_count);
    CHECK(bad_relu == 0, "%s: %d of %zu relu outputs differ", what, bad_relu, in_count);
    CHECK(bad_middle == 0, "%s: %d of %zu pool input gradients differ", what, bad_middle,
          in_count);
    CHECK(bad_in == 0, "%s: %d of %zu relu input gradients differ", what, bad_in, in_count);

    /* The model's forward: the logits are the pool's output, and the
     * relu's output (its input, aliased) is rectified. */
    const float *logits = fedkd_model_forward(model, input, batch);
    bad_out = bad_relu = 0;
    for (size_t i = 0; i < out_count; i++) bad_out += memcmp(&logits[i], &ref_output[i], 4) != 0;
    for (size_t i = 0; i < in_count; i++)
        bad_relu += memcmp(&model->activations[1][i], &rectified[i], 4) != 0;
    CHECK(bad_out == 0, "%s: model: %d of %zu outputs differ", what, bad_out, out_count);
    CHECK(bad_relu == 0, "%s: model: %d of %zu relu outputs differ", what, bad_relu, in_count);
    fedkd_model_destroy(&model);
    free(input);
    free(rectified);
    free(values);
    free(d_middle);
    free(d_input);
    free(ref_d_pool);
    free(ref_d_input);
    free(output);
    free(d_output);
    free(ref_output);
}

/* Whole models with a fused pair against the same layers run apart (the
 * fusion cleared, every activation in its own buffer): logits, every
 * parameter gradient and the input gradient of the first layer after the
 * pair, bit for bit. A relu not followed by a 2x2 / 2 pool is not fused. */
static void check_fused_model(void)
{
    enum { batch = 3, layers = 6 };
    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.input = (fedkd_shape){2, 9, 11};
    spec.num_classes = 5;
    const char *kinds[layers] = {"conv2d", "relu", "maxpool", "relu", "flatten", "dense"};
    for (int i = 0; i < layers; i++)
        snprintf(spec.layers[i].kind, sizeof spec.layers[i].kind, "%s", kinds[i]);
    spec.layers[0].filters = 3;
    spec.layers[0].kernel = 3;
    spec.layers[0].padding = 1;
    spec.layers[2].kernel = 2;
    spec.layers[5].units = 5;
    spec.num_layers = layers;
    fedkd_model *model = NULL;
    if (fedkd_model_create(&model, &spec, batch) != FEDKD_OK) {
        CHECK(0, "fused model: %s", fedkd_error_message());
        return;
    }
    CHECK(model->layers[1].relu_fused && model->layers[2].relu_fused &&
              !model->layers[3].relu_fused,
          "fused model: the fusion is on the first relu only");
    fedkd_model_init_params(model, 11, 0);
    size_t in_count = fedkd_shape_size(spec.input) * batch;
    float *input = malloc(in_count * sizeof *input);
    for (size_t i = 0; i < in_count; i++) input[i] = (float)(fedkd_rng_uniform(&rng) - 0.5);
    float d_logits[batch * 5];
    for (int i = 0; i < batch * 5; i++) d_logits[i] = (float)(fedkd_rng_uniform(&rng) - 0.5);
    const float *logits = fedkd_model_forward(model, input, batch);
    float fused_logits[batch * 5];
    memcpy(fused_logits, logits, sizeof fused_logits);
    fedkd_model_zero_grad(model);
    fedkd_model_backward(model, d_logits, batch);

    /* The same layers apart: own buffers for every activation and gradient. */
    fedkd_layer apart[layers];
    float *act[layers + 1], *grad[layers + 1];
    float *params = model->params, *grads = calloc(model->num_params, sizeof *grads);
    float *scratch = model->scratch;
    for (int i = 0; i <= layers; i++) {
        fedkd_shape shape = i == 0 ? spec.input : model->layers[i - 1].out_shape;
        act[i] = calloc(fedkd_shape_size(shape) * batch, sizeof(float));
        grad[i] = calloc(fedkd_shape_size(shape) * batch, sizeof(float));
        if (i < layers) {
            apart[i] = model->layers[i];
            apart[i].relu_fused = 0;
        }
    }
    memcpy(act[0], input, in_count * sizeof *input);
    for (int i = 0; i < layers; i++)
        apart[i].kind->forward(&apart[i], params + apart[i].param_offset, act[i], act[i + 1],
                               batch, scratch);
    memcpy(grad[layers], d_logits, sizeof d_logits);
    for (int i = layers - 1; i >= 0; i--)
        apart[i].kind->backward(&apart[i], params + apart[i].param_offset, act[i], act[i + 1],
                                grad[i + 1], i > 0 ? grad[i] : NULL,
                                grads + apart[i].param_offset, batch, scratch);
    CHECK(memcmp(fused_logits, act[layers], sizeof fused_logits) == 0,
          "fused model: logits differ");
    CHECK(memcmp(grads, model->grads, model->num_params * sizeof *grads) == 0,
          "fused model: parameter gradients differ");
    for (int i = 0; i <= layers; i++) {
        free(act[i]);
        free(grad[i]);
    }
    free(grads);
    free(input);
    fedkd_model_destroy(&model);
}

int main(void)
{
    rng = fedkd_rng_stream(5, FEDKD_RNG_TEST, 0, 0);
    check_pool(3, (fedkd_shape){6, 28, 28}, 2, 2); /* the cnn preset's pools */
    check_pool(3, (fedkd_shape){16, 10, 10}, 2, 2);
    check_pool(2, (fedkd_shape){2, 5, 7}, 2, 2);   /* odd sizes: a row and a column left out */
    /* 2x2 / 2 has its own kernels: rows of 16, 17 and 33 outputs reach the
     * vector loops and their remainders, odd sizes the rows left out. */
    check_pool(2, (fedkd_shape){3, 4, 32}, 2, 2);
    check_pool(3, (fedkd_shape){2, 7, 35}, 2, 2);
    check_pool(1, (fedkd_shape){5, 9, 66}, 2, 2);
    check_pool(2, (fedkd_shape){1, 2, 2}, 2, 2);
    check_pool(2, (fedkd_shape){3, 7, 7}, 3, 2);   /* overlapping windows */
    check_pool(2, (fedkd_shape){2, 8, 11}, 2, 3);  /* gaps between windows */
    check_pool(1, (fedkd_shape){1, 10, 11}, 3, 3); /* k 3, partial last window */
    check_pool(2, (fedkd_shape){1, 4, 4}, 4, 4);   /* one window per plane */
    check_pool(2, (fedkd_shape){2, 6, 6}, 1, 1);   /* identity */
    /* A NaN in a window is kept only as its first value, as the scan does:
     * 1, 2, NaN, 5 gives 5 (pairing (NaN, 5) first would give 2). */
    with_nan = 1;
    check_pool(3, (fedkd_shape){6, 28, 28}, 2, 2);
    check_pool(1, (fedkd_shape){5, 9, 66}, 2, 2);
    check_pool(2, (fedkd_shape){2, 8, 11}, 2, 3);
    with_nan = 0;
    check_relu(1001);
    check_fused(3, (fedkd_shape){6, 28, 28}, 0); /* the cnn preset's pairs */
    check_fused(3, (fedkd_shape){16, 10, 10}, 1);
    check_fused(2, (fedkd_shape){2, 5, 7}, 1);   /* odd: a row and a column in no window */
    check_fused(2, (fedkd_shape){3, 7, 35}, 1);  /* vector blocks and their remainders */
    check_fused(1, (fedkd_shape){5, 9, 66}, 0);
    check_fused(2, (fedkd_shape){1, 2, 2}, 1);
    check_fused_model();
    return test_finish("test_pool_reference");
}
