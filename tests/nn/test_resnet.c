/* Models with normalisation layers and residual blocks: the presets'
 * parameter counts, JSON round trips with nested blocks, a whole-model
 * finite-difference check in training mode, batchnorm's statistics against
 * a naive reference, the optimizer leaving running statistics alone, the
 * difference between training and evaluation mode, and bad specs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fedkd/core/rng.h"
#include "fedkd/nn/model_json.h"
#include "fedkd/nn/nn.h"
#include "expect_config_error.h"
#include "test_util.h"

static fedkd_rng rng;
static const fedkd_shape cifar = {3, 32, 32};

static float uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)fedkd_rng_uniform(&rng);
}

static size_t conv_params(size_t in, size_t out, size_t kernel)
{
    return out * in * kernel * kernel + out;
}

/* gamma, beta, running mean, running variance */
static size_t bn_params(size_t channels) { return 4 * channels; }

/* Parameters of a 6n + 2 ResNet with our layers (convs have a bias), and
 * how many of them are running statistics. */
static size_t resnet_params(int blocks, size_t *stats)
{
    size_t total = conv_params(3, 16, 3) + bn_params(16);
    size_t bns = 1, channels = 16;
    const size_t widths[3] = {16, 32, 64};
    for (int stage = 0; stage < 3; stage++)
        for (int b = 0; b < blocks; b++) {
            size_t out = widths[stage];
            total += conv_params(channels, out, 3) + bn_params(out) + conv_params(out, out, 3) +
                     bn_params(out);
            bns += 2 * out;
            if (out != channels) {
                total += conv_params(channels, out, 1) + bn_params(out);
                bns += out;
            }
            channels = out;
        }
    total += 64 * 10 + 10;
    *stats = 2 * (bns - 1 + 16); /* 2 per normalised channel */
    return total;
}

static void check_presets(void)
{
    const char *names[2] = {"resnet8", "resnet20"};
    const int blocks[2] = {1, 3};
    for (int p = 0; p < 2; p++) {
        fedkd_model_spec spec;
        fedkd_status status = fedkd_model_spec_preset(&spec, names[p], cifar, 10);
        CHECK(status == FEDKD_OK, "%s: %s", names[p], fedkd_error_message());
        size_t params = 0;
        double bytes = 0.0;
        CHECK(fedkd_model_estimate(&spec, 2, &params, &bytes) == FEDKD_OK, "%s estimate",
              names[p]);
        size_t stats = 0, expected = resnet_params(blocks[p], &stats);
        CHECK(params == expected, "%s: %zu parameters, expected %zu", names[p], params,
              expected);
        int count = 0;
        size_t begin[64], end[64], counted = 0;
        CHECK(fedkd_model_spec_param_ranges(&spec, FEDKD_PARAMS_STATS, begin, end, 64, &count) ==
                  FEDKD_OK,
              "stats ranges");
        for (int i = 0; i < count && i < 64; i++) counted += end[i] - begin[i];
        CHECK(counted == stats, "%s: %zu running statistics, expected %zu", names[p], counted,
              stats);
        CHECK(fedkd_model_spec_min_train_batch(&spec) == 2, "%s trains on >= 2 samples",
              names[p]);
        if (p == 1) {
            /* He et al. report 0.27 M for resnet20 (identity shortcuts, no
             * conv bias); ours has 1x1 projections and conv biases. */
            double trainable = (double)(params - stats);
            CHECK(fabs(trainable - 272474.0) < 0.02 * 272474.0,
                  "resnet20: %.0f trainable parameters, expected about 0.27 M", trainable);
            CHECK(spec.num_layers == 69, "resnet20 has %d flat layers", spec.num_layers);
        }
    }
    fedkd_model_spec cnn;
    fedkd_model_spec_preset(&cnn, "cnn", (fedkd_shape){1, 28, 28}, 10);
    CHECK(fedkd_model_spec_min_train_batch(&cnn) == 1, "cnn trains on single samples");
}

static fedkd_status parse(const char *text, fedkd_model_spec *spec, fedkd_shape input,
                          int classes)
{
    cJSON *json = cJSON_Parse(text);
    CHECK(json != NULL, "test JSON parses: %s", text);
    fedkd_status status =
        fedkd_model_spec_from_json(spec, json, input, classes, "config key `model`");
    cJSON_Delete(json);
    return status;
}

static const char *const small_resnet =
    "[{\"type\": \"conv2d\", \"filters\": 4, \"kernel\": 3, \"padding\": 1},"
    " {\"type\": \"batchnorm\"}, {\"type\": \"relu\"},"
    " {\"type\": \"residual\", \"projection\": \"conv-batchnorm\", \"layers\": ["
    "   {\"type\": \"conv2d\", \"filters\": 6, \"kernel\": 3, \"stride\": 2, \"padding\": 1},"
    "   {\"type\": \"batchnorm\", \"momentum\": 0.2}, {\"type\": \"relu\"},"
    "   {\"type\": \"conv2d\", \"filters\": 6, \"kernel\": 3, \"padding\": 1},"
    "   {\"type\": \"batchnorm\", \"epsilon\": 0.001}]},"
    " {\"type\": \"relu\"},"
    " {\"type\": \"residual\", \"layers\": ["
    "   {\"type\": \"conv2d\", \"filters\": 6, \"kernel\": 3, \"padding\": 1},"
    "   {\"type\": \"groupnorm\", \"groups\": 3}]},"
    " {\"type\": \"avgpool\", \"global\": true}, {\"type\": \"flatten\"},"
    " {\"type\": \"dense\", \"units\": 3}]";

static void check_json(void)
{
    fedkd_model_spec spec, again;
    const fedkd_shape input = {2, 6, 6};
    fedkd_status status = parse(small_resnet, &spec, input, 3);
    CHECK(status == FEDKD_OK, "nested spec: %s", fedkd_error_message());
    CHECK(spec.num_layers == 16, "flat layers %d", spec.num_layers);
    CHECK(strcmp(spec.layers[8].kind, "residual") == 0 && spec.layers[8].body == 5 &&
              spec.layers[8].projection == FEDKD_PROJECTION_CONV_BATCHNORM &&
              spec.layers[12].body == 2 && spec.layers[12].projection == FEDKD_PROJECTION_NONE,
          "the blocks close at 8 and 12 with bodies of 5 and 2");
    CHECK(spec.layers[4].momentum == 0.2f && spec.layers[7].epsilon == 0.001f &&
              spec.layers[11].groups == 3 && spec.layers[13].global == 1,
          "fields of nested layers");
    cJSON *json = fedkd_model_spec_to_json(&spec);
    CHECK(json != NULL, "to_json");
    status = fedkd_model_spec_from_json(&again, json, input, 3, "round trip");
    CHECK(status == FEDKD_OK && again.num_layers == spec.num_layers &&
              memcmp(again.layers, spec.layers,
                     sizeof(fedkd_layer_spec) * (size_t)spec.num_layers) == 0,
          "nested round trip: %s", fedkd_error_message());
    cJSON *blocks = cJSON_GetArrayItem(json, 3);
    CHECK(cJSON_GetArraySize(json) == 9 &&
              cJSON_GetArraySize(cJSON_GetObjectItem(blocks, "layers")) == 5,
          "the JSON nests the body back");
    cJSON_Delete(json);

    fedkd_model_spec resnet;
    fedkd_model_spec_preset(&resnet, "resnet20", cifar, 10);
    json = fedkd_model_spec_to_json(&resnet);
    status = fedkd_model_spec_from_json(&again, json, cifar, 10, "round trip");
    CHECK(status == FEDKD_OK && again.num_layers == resnet.num_layers &&
              memcmp(again.layers, resnet.layers,
                     sizeof(fedkd_layer_spec) * (size_t)resnet.num_layers) == 0,
          "resnet20 round trip: %s", fedkd_error_message());
    cJSON_Delete(json);
}


static void check_errors(void)
{
    fedkd_model_spec spec;
    const fedkd_shape input = {2, 6, 6};
    EXPECT_ERROR("shape change without projection",
                 parse("[{\"type\": \"residual\", \"layers\": [{\"type\": \"conv2d\", \"filters\": "
                       "4, \"kernel\": 3, \"stride\": 2, \"padding\": 1}]}, {\"type\": \"flatten\"},"
                       " {\"type\": \"dense\", \"units\": 3}]",
                       &spec, input, 3),
                 "config key `model[0]`", "residual", "2x6x6 into 4x3x3", "projection");
    EXPECT_ERROR("unknown key inside a block",
                 parse("[{\"type\": \"residual\", \"layers\": [{\"type\": \"batchnorm\", "
                       "\"momentun\": 0.1}]}, {\"type\": \"flatten\"}, {\"type\": \"dense\", "
                       "\"units\": 3}]",
                       &spec, input, 3),
                 "config key `model[0].layers[0].momentun`", "did you mean `momentum`");
    EXPECT_ERROR("unknown key on a block",
                 parse("[{\"type\": \"residual\", \"body\": 2, \"layers\": [{\"type\": "
                       "\"relu\"}]}, {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 3}]",
                       &spec, input, 3),
                 "model[0].body`", "residual");
    EXPECT_ERROR("nested blocks",
                 parse("[{\"type\": \"residual\", \"layers\": [{\"type\": \"residual\", "
                       "\"layers\": [{\"type\": \"relu\"}]}]}, {\"type\": \"flatten\"}, "
                       "{\"type\": \"dense\", \"units\": 3}]",
                       &spec, input, 3),
                 "model[0].layers[0].layers`", "inside another");
    EXPECT_ERROR("empty block",
                 parse("[{\"type\": \"residual\", \"layers\": []}, {\"type\": \"flatten\"}, "
                       "{\"type\": \"dense\", \"units\": 3}]",
                       &spec, input, 3),
                 "model[0].layers`", "at least one");
    EXPECT_ERROR("groups not dividing the channels",
                 parse("[{\"type\": \"groupnorm\", \"groups\": 4}, {\"type\": \"flatten\"}, "
                       "{\"type\": \"dense\", \"units\": 3}]",
                       &spec, input, 3),
                 "model[0]`", "groupnorm", "dividing the 2 input channels");
    EXPECT_ERROR("bad projection",
                 parse("[{\"type\": \"residual\", \"projection\": \"1x1\", \"layers\": [{\"type\": "
                       "\"relu\"}]}, {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 3}]",
                       &spec, input, 3),
                 "model[0].projection`", "conv-batchnorm");
    EXPECT_ERROR("momentum out of range",
                 parse("[{\"type\": \"batchnorm\", \"momentum\": 1.5}, {\"type\": \"flatten\"}, "
                       "{\"type\": \"dense\", \"units\": 3}]",
                       &spec, input, 3),
                 "model[0].momentum`", "(0, 1]");
    EXPECT_ERROR("layer after a block",
                 parse("[{\"type\": \"relu\"}, {\"type\": \"residual\", \"layers\": [{\"type\": "
                       "\"conv2d\", \"filters\": 2, \"kernel\": 3, \"padding\": 1}]}, "
                       "{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 5}]",
                       &spec, input, 3),
                 "config key `model`", "outputs 5 values");
}

/* ReLU signs of every relu layer's input: a finite difference is valid
 * only when both probes keep the base point's signs. */
static size_t relu_signature(const fedkd_model *model, int batch, unsigned char *signature)
{
    size_t n = 0;
    for (int l = 0; l < model->num_layers; l++) {
        const fedkd_layer *layer = &model->layers[l];
        if (strcmp(layer->kind->name, "relu") != 0) continue;
        size_t count = fedkd_shape_size(layer->in_shape) * (size_t)batch;
        for (size_t i = 0; i < count; i++) signature[n++] = model->activations[l][i] > 0.0f;
    }
    return n;
}

static double weighted_logits(fedkd_model *model, const float *input, const float *weights,
                              int batch)
{
    const float *logits = fedkd_model_forward(model, input, batch);
    double sum = 0.0;
    for (size_t i = 0; i < (size_t)batch * 3; i++) sum += (double)logits[i] * (double)weights[i];
    return sum;
}

/* Whole-model finite differences in training mode, on every trainable
 * parameter of a model with both kinds of shortcut, batchnorm and
 * groupnorm; eps 1e-3, tolerance as in test_gradcheck.c. */
static void check_model_gradients(void)
{
    enum { batch = 4 };
    fedkd_model_spec spec;
    CHECK(parse(small_resnet, &spec, (fedkd_shape){2, 6, 6}, 3) == FEDKD_OK, "spec");
    fedkd_model *model = NULL;
    CHECK(fedkd_model_create(&model, &spec, batch) == FEDKD_OK, "create: %s",
          fedkd_error_message());
    if (!model) return;
    fedkd_model_init_params(model, 5, 0);
    size_t in_count = fedkd_shape_size(spec.input) * batch;
    float *input = malloc(in_count * sizeof *input);
    float weights[batch * 3];
    for (size_t i = 0; i < in_count; i++) input[i] = uniform(-1.0f, 1.0f);
    for (int i = 0; i < batch * 3; i++) weights[i] = uniform(-1.0f, 1.0f);
    /* Move gamma and beta off 1 and 0 so that their gradients are generic. */
    int count = 0;
    size_t begin[16], end[16], stats_begin[16], stats_end[16];
    int stats_count = 0;
    fedkd_model_spec_param_ranges(&spec, FEDKD_PARAMS_NORM, begin, end, 16, &count);
    fedkd_model_spec_param_ranges(&spec, FEDKD_PARAMS_STATS, stats_begin, stats_end, 16,
                                  &stats_count);
    /* 3 batchnorms, the shortcut's batchnorm, the groupnorm */
    CHECK(count == 5 && stats_count == 4, "norm ranges %d, stats ranges %d", count,
          stats_count);
    for (size_t p = 0; p < model->num_params; p++) {
        int is_stat = 0;
        for (int r = 0; r < stats_count; r++)
            is_stat |= p >= stats_begin[r] && p < stats_end[r];
        for (int r = 0; r < count && !is_stat; r++)
            if (p >= begin[r] && p < end[r]) model->params[p] += uniform(-0.3f, 0.3f);
    }

    model->training = 1;
    unsigned char *base = malloc(8192), *probe = malloc(8192);
    weighted_logits(model, input, weights, batch);
    size_t length = relu_signature(model, batch, base);
    CHECK(length < 8192, "signature fits");
    fedkd_model_zero_grad(model);
    fedkd_model_backward(model, weights, batch);
    const double eps = 1e-3;
    int bad = 0, checked = 0, skipped = 0;
    for (size_t p = 0; p < model->num_params; p++) {
        int is_stat = 0;
        for (int r = 0; r < stats_count; r++) is_stat |= p >= stats_begin[r] && p < stats_end[r];
        if (is_stat) {
            CHECK(model->grads[p] == 0.0f, "running statistic %zu has gradient %g", p,
                  (double)model->grads[p]);
            continue;
        }
        float saved = model->params[p];
        model->params[p] = (float)((double)saved + eps);
        double plus = weighted_logits(model, input, weights, batch);
        relu_signature(model, batch, probe);
        int crossed = memcmp(base, probe, length) != 0;
        model->params[p] = (float)((double)saved - eps);
        double minus = weighted_logits(model, input, weights, batch);
        relu_signature(model, batch, probe);
        crossed |= memcmp(base, probe, length) != 0;
        model->params[p] = saved;
        if (crossed) {
            skipped++;
            continue;
        }
        checked++;
        double numeric = (plus - minus) / (2.0 * eps), analytic = (double)model->grads[p];
        double diff = fabs(analytic - numeric);
        if (diff > 1e-3 && diff > 2e-2 * fmax(fabs(analytic), fabs(numeric))) {
            if (bad++ < 3)
                fprintf(stderr, "model: grads[%zu] analytic %g numeric %g\n", p, analytic,
                        numeric);
        }
    }
    CHECK(bad == 0, "small resnet: %d of %d parameter gradients disagree", bad, checked);
    CHECK(skipped * 10 <= checked, "small resnet: %d probes crossed a kink", skipped);
    printf("%-28s params %4zu checked %d skipped at kinks %d\n", "small resnet (training)",
           model->num_params, checked, skipped);

    /* Evaluation mode: running statistics, so a sample's logits do not
     * depend on the rest of its batch; in training mode they do. */
    model->training = 0;
    const float *all = fedkd_model_forward(model, input, batch);
    float eval_first[3], eval_alone[3];
    memcpy(eval_first, all, sizeof eval_first);
    memcpy(eval_alone, fedkd_model_forward(model, input, 1), sizeof eval_alone);
    CHECK(memcmp(eval_first, eval_alone, sizeof eval_first) == 0,
          "evaluation: a sample's logits do not depend on its batch");
    model->training = 1;
    float train_first[3], train_pair[3];
    memcpy(train_first, fedkd_model_forward(model, input, batch), sizeof train_first);
    memcpy(train_pair, fedkd_model_forward(model, input, 2), sizeof train_pair);
    CHECK(memcmp(train_first, train_pair, sizeof train_first) != 0,
          "training: batch statistics make a sample's logits depend on its batch");
    CHECK(memcmp(train_first, eval_first, sizeof train_first) != 0,
          "training and evaluation differ");

    /* A step with momentum and weight decay leaves running statistics
     * exactly where the forward pass put them, and moves the rest. */
    fedkd_optimizer_settings settings = fedkd_optimizer_default_settings();
    settings.lr = 0.1f;
    settings.momentum = 0.9f;
    settings.weight_decay = 0.01f;
    fedkd_optimizer *optimizer = NULL;
    CHECK(fedkd_optimizer_create(&optimizer, &settings, model->num_params) == FEDKD_OK, "sgd");
    float *before = malloc(model->num_params * sizeof *before);
    int moved = 0, stats_moved = 0;
    for (int step = 0; step < 2 && optimizer; step++) {
        fedkd_model_forward(model, input, batch);
        fedkd_model_zero_grad(model);
        fedkd_model_backward(model, weights, batch);
        memcpy(before, model->params, model->num_params * sizeof *before);
        fedkd_optimizer_step_model(optimizer, model);
        for (size_t p = 0; p < model->num_params; p++) {
            int is_stat = 0;
            for (int r = 0; r < stats_count; r++)
                is_stat |= p >= stats_begin[r] && p < stats_end[r];
            if (is_stat) stats_moved += model->params[p] != before[p];
            else moved += model->params[p] != before[p];
        }
    }
    CHECK(stats_moved == 0, "the optimizer moved %d running statistics", stats_moved);
    CHECK(moved > (int)model->num_params, "the optimizer moved the weights (%d changes)", moved);
    fedkd_optimizer_destroy(&optimizer);
    model->training = 0;
    free(before);
    free(base);
    free(probe);
    free(input);
    fedkd_model_destroy(&model);
}

/* Batchnorm against a naive reference: output and running statistics after
 * one training pass (PyTorch: momentum 0.1, unbiased running variance,
 * epsilon 1e-5), then evaluation with the running statistics. */
static void check_batchnorm_reference(void)
{
    enum { batch = 3, channels = 2, plane = 4 };
    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "bn");
    spec.input = (fedkd_shape){channels, 2, 2};
    spec.num_classes = channels * plane;
    spec.num_layers = 2;
    snprintf(spec.layers[0].kind, sizeof spec.layers[0].kind, "batchnorm");
    snprintf(spec.layers[1].kind, sizeof spec.layers[1].kind, "flatten");
    fedkd_model *model = NULL;
    CHECK(fedkd_model_create(&model, &spec, batch) == FEDKD_OK, "bn model");
    if (!model) return;
    fedkd_model_init_params(model, 1, 0);
    float *p = model->params;
    CHECK(p[0] == 1.0f && p[2] == 0.0f && p[4] == 0.0f && p[6] == 1.0f, "initial gamma, beta, "
          "mean, var");
    p[0] = 1.5f, p[1] = -0.5f, p[2] = 0.25f, p[3] = 2.0f;
    float x[batch * channels * plane];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = uniform(-2.0f, 3.0f);
    model->training = 1;
    const float *y = fedkd_model_forward(model, x, batch);
    for (int c = 0; c < channels; c++) {
        double sum = 0.0, squares = 0.0;
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < plane; i++) sum += (double)x[(n * channels + c) * plane + i];
        double mean = sum / (batch * plane);
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < plane; i++) {
                double d = (double)x[(n * channels + c) * plane + i] - mean;
                squares += d * d;
            }
        double var = squares / (batch * plane);
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < plane; i++) {
                int at = (n * channels + c) * plane + i;
                double expected =
                    (double)p[c] * ((double)x[at] - mean) / sqrt(var + 1e-5) + (double)p[2 + c];
                CHECK_CLOSE(y[at], expected, 1e-5, "batchnorm training output");
            }
        CHECK_CLOSE(p[4 + c], 0.1 * mean, 1e-6, "running mean");
        CHECK_CLOSE(p[6 + c], 0.9 + 0.1 * squares / (batch * plane - 1), 1e-6,
                    "running variance (unbiased)");
    }
    model->training = 0;
    y = fedkd_model_forward(model, x, batch);
    for (int at = 0; at < batch * channels * plane; at++) {
        int c = (at / plane) % channels;
        double expected = (double)p[c] * ((double)x[at] - (double)p[4 + c]) /
                              sqrt((double)p[6 + c] + 1e-5) +
                          (double)p[2 + c];
        CHECK_CLOSE(y[at], expected, 1e-5, "batchnorm evaluation output");
    }
    fedkd_model_destroy(&model);
}

/* resnet8 on CIFAR-shaped input: finite logits, and evaluation of a batch
 * equals evaluation of its samples one by one. */
static void check_resnet8_forward(void)
{
    fedkd_model_spec spec;
    fedkd_model_spec_preset(&spec, "resnet8", cifar, 10);
    fedkd_model *model = NULL;
    CHECK(fedkd_model_create(&model, &spec, 2) == FEDKD_OK, "resnet8");
    if (!model) return;
    fedkd_model_init_params(model, 3, 0);
    size_t sample = fedkd_shape_size(cifar);
    float *x = malloc(2 * sample * sizeof *x);
    for (size_t i = 0; i < 2 * sample; i++) x[i] = uniform(-1.0f, 1.0f);
    model->training = 1;
    const float *logits = fedkd_model_forward(model, x, 2);
    int finite = 1;
    for (int i = 0; i < 20; i++) finite &= isfinite(logits[i]);
    CHECK(finite, "resnet8 training logits are finite");
    fedkd_model_zero_grad(model);
    float d_logits[20];
    for (int i = 0; i < 20; i++) d_logits[i] = 0.05f;
    fedkd_model_backward(model, d_logits, 2);
    double norm = 0.0;
    for (size_t i = 0; i < model->num_params; i++) norm += (double)model->grads[i] * (double)model->grads[i];
    CHECK(isfinite(norm) && norm > 0.0, "resnet8 gradient norm %g", norm);
    model->training = 0;
    float pair[20];
    memcpy(pair, fedkd_model_forward(model, x, 2), sizeof pair);
    const float *second = fedkd_model_forward(model, x + sample, 1);
    CHECK(memcmp(pair + 10, second, 10 * sizeof *second) == 0,
          "resnet8 evaluation is per sample");
    CHECK(fabs(fedkd_model_forward_macs(model) - 12.5e6) < 1.5e6, "resnet8 MACs %.3g",
          fedkd_model_forward_macs(model));
    free(x);
    fedkd_model_destroy(&model);
}

int main(void)
{
    rng = fedkd_rng_stream(4, FEDKD_RNG_TEST, 0, 0);
    check_presets();
    check_json();
    check_errors();
    check_model_gradients();
    check_batchnorm_reference();
    check_resnet8_forward();
    return test_finish("test_resnet");
}
