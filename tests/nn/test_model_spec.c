/* Model presets and JSON specs: parameter counts, shapes, MACs, the
 * initialiser's ranges and determinism, the JSON round trip, and the error
 * messages for bad specs (each must name the offending thing). */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fedkd/nn/model_json.h"
#include "fedkd/nn/nn.h"
#include "expect_config_error.h"
#include "test_util.h"

static const fedkd_shape mnist = {1, 28, 28};

static void check_mlp(void)
{
    fedkd_model_spec spec;
    fedkd_status status = fedkd_model_spec_preset(&spec, "mlp", mnist, 10);
    CHECK(status == FEDKD_OK, "mlp preset: %s", fedkd_error_message());
    fedkd_model *model = NULL;
    status = fedkd_model_create(&model, &spec, 16);
    CHECK(status == FEDKD_OK, "mlp create: %s", fedkd_error_message());
    if (!model) return;
    /* 784*200+200 + 200*200+200 + 200*10+10 */
    CHECK(model->num_params == 199210, "mlp has %zu params, expected 199210", model->num_params);
    CHECK(model->num_layers == 6, "mlp layers %d", model->num_layers);
    CHECK(fedkd_model_num_classes(model) == 10, "mlp classes");
    CHECK_CLOSE(fedkd_model_forward_macs(model), 784.0 * 200 + 200.0 * 200 + 200.0 * 10, 0.0,
                "mlp MACs");
    CHECK(model->layers[1].followed_by_relu && model->layers[3].followed_by_relu &&
              !model->layers[5].followed_by_relu && !model->layers[0].followed_by_relu,
          "followed_by_relu flags");
    CHECK(model->layers[3].param_offset == 784 * 200 + 200, "second dense offset %zu",
          model->layers[3].param_offset);

    /* He on the hidden layers, Glorot on the logits: all weights within the
     * limit, and the largest of many draws close to it; biases 0. */
    fedkd_model_init_params(model, 42, 3);
    const fedkd_layer *first = &model->layers[1], *last = &model->layers[5];
    double he = sqrt(6.0 / 784.0), glorot = sqrt(6.0 / (200.0 + 10.0));
    double max_first = 0.0, max_last = 0.0, bias_sum = 0.0;
    for (size_t i = 0; i < 784 * 200; i++)
        max_first = fmax(max_first, fabs((double)model->params[first->param_offset + i]));
    for (size_t i = 0; i < 200; i++)
        bias_sum += fabs((double)model->params[first->param_offset + 784 * 200 + i]);
    for (size_t i = 0; i < 200 * 10; i++)
        max_last = fmax(max_last, fabs((double)model->params[last->param_offset + i]));
    CHECK(max_first <= he && max_first > 0.99 * he, "He limit %g, largest |w| %g", he, max_first);
    CHECK(max_last <= glorot && max_last > 0.95 * glorot, "Glorot limit %g, largest |w| %g",
          glorot, max_last);
    CHECK(bias_sum == 0.0, "biases start at 0");

    /* Same (seed, id): same weights; another id: different weights. */
    fedkd_model *twin = NULL, *other = NULL;
    CHECK(fedkd_model_create(&twin, &spec, 1) == FEDKD_OK, "twin");
    CHECK(fedkd_model_create(&other, &spec, 1) == FEDKD_OK, "other");
    if (twin && other) {
        fedkd_model_init_params(twin, 42, 3);
        fedkd_model_init_params(other, 42, 4);
        CHECK(memcmp(twin->params, model->params, model->num_params * sizeof(float)) == 0,
              "init is deterministic");
        CHECK(memcmp(other->params, model->params, model->num_params * sizeof(float)) != 0,
              "model id changes the init");
    }

    /* Forward works at batch 1 and max_batch, rejects larger batches. */
    float *input = calloc(16 * 784, sizeof *input);
    for (int i = 0; i < 16 * 784; i++) input[i] = (float)((i * 7) % 13) / 13.0f;
    const float *logits16 = fedkd_model_forward(model, input, 16);
    CHECK(logits16 != NULL, "forward at max_batch");
    float first_row[10];
    if (logits16) memcpy(first_row, logits16, sizeof first_row);
    const float *logits1 = fedkd_model_forward(model, input, 1);
    /* Not bitwise: OpenBLAS may block a 1-row product differently. */
    for (int j = 0; logits1 && logits16 && j < 10; j++)
        CHECK_CLOSE(logits1[j], first_row[j], 1e-5, "a sample's logits at batch 1 and 16");
    CHECK(logits1 != NULL, "forward at batch 1");
    CHECK(fedkd_model_forward(model, input, 17) == NULL, "batch above max_batch refused");
    free(input);
    fedkd_model_destroy(&twin);
    fedkd_model_destroy(&other);
    fedkd_model_destroy(&model);
}

static void check_cnn(void)
{
    fedkd_model_spec spec;
    fedkd_status status = fedkd_model_spec_preset(&spec, "cnn", mnist, 10);
    CHECK(status == FEDKD_OK, "cnn preset: %s", fedkd_error_message());
    fedkd_model *model = NULL;
    status = fedkd_model_create(&model, &spec, 8);
    CHECK(status == FEDKD_OK, "cnn create: %s", fedkd_error_message());
    if (!model) return;
    /* conv 6x1x5x5+6 = 156, conv 16x6x5x5+16 = 2416, dense 400*120+120 = 48120,
     * 120*84+84 = 10164, 84*10+10 = 850: 61706. */
    CHECK(model->num_params == 61706, "cnn has %zu params, expected 61706", model->num_params);
    const int shapes[12][3] = {{6, 28, 28},  {6, 28, 28}, {6, 14, 14}, {16, 10, 10},
                               {16, 10, 10}, {16, 5, 5},  {400, 1, 1}, {120, 1, 1},
                               {120, 1, 1},  {84, 1, 1},  {84, 1, 1},  {10, 1, 1}};
    CHECK(model->num_layers == 12, "cnn layers %d", model->num_layers);
    for (int i = 0; i < 12 && i < model->num_layers; i++) {
        fedkd_shape s = model->layers[i].out_shape;
        CHECK(s.channels == shapes[i][0] && s.height == shapes[i][1] && s.width == shapes[i][2],
              "cnn layer %d outputs %dx%dx%d, expected %dx%dx%d", i, s.channels, s.height,
              s.width, shapes[i][0], shapes[i][1], shapes[i][2]);
    }
    /* 6*28*28*25 + 16*10*10*150 + 400*120 + 120*84 + 84*10 */
    CHECK_CLOSE(fedkd_model_forward_macs(model), 416520.0, 0.0, "cnn MACs");
    /* One scratch buffer, sized for the largest conv chunk: the first conv's
     * im2col (25, 8 * 784), max_batch 8 samples being fewer than a chunk (its
     * products read d_output and write the output in place: 784 pixels are
     * whole groups of 16 lanes). */
    CHECK(model->scratch_floats_per_pass == 25 * 8 * 784, "cnn scratch %zu floats",
          model->scratch_floats_per_pass);
    fedkd_model_init_params(model, 1, 0);
    float *input = calloc(8 * 784, sizeof *input);
    for (int i = 0; i < 8 * 784; i++) input[i] = (float)((i * 5) % 11) / 11.0f;
    const float *logits = fedkd_model_forward(model, input, 8);
    int finite = logits != NULL;
    for (int i = 0; logits && i < 80; i++) finite &= isfinite(logits[i]);
    CHECK(finite, "cnn forward gives finite logits");
    free(input);
    fedkd_model_destroy(&model);
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

static void check_json(void)
{
    fedkd_model_spec spec;
    const fedkd_shape small = {1, 8, 8};
    fedkd_status status =
        parse("[{\"type\": \"conv2d\", \"filters\": 4, \"kernel\": 3, \"padding\": 1},"
              " {\"type\": \"relu\"}, {\"type\": \"maxpool\", \"kernel\": 2},"
              " {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 10, \"init\": \"glorot\"}]",
              &spec, small, 10);
    CHECK(status == FEDKD_OK, "layer list: %s", fedkd_error_message());
    CHECK(spec.num_layers == 5 && strcmp(spec.layers[0].kind, "conv2d") == 0 &&
              spec.layers[0].filters == 4 && spec.layers[0].kernel == 3 &&
              spec.layers[0].padding == 1 && spec.layers[2].kernel == 2 &&
              spec.layers[4].units == 10 && spec.layers[4].init == FEDKD_INIT_GLOROT,
          "layer list fields");
    fedkd_model *model = NULL;
    CHECK(fedkd_model_create(&model, &spec, 2) == FEDKD_OK, "create from JSON");
    /* 4*1*3*3+4 = 40, then 4*4*4 = 64 features -> 64*10+10 = 650 */
    CHECK(model && model->num_params == 690, "JSON model params %zu",
          model ? model->num_params : 0);
    fedkd_model_destroy(&model);

    /* Round trip through JSON. */
    cJSON *json = fedkd_model_spec_to_json(&spec);
    CHECK(json != NULL, "to_json");
    fedkd_model_spec again;
    status = fedkd_model_spec_from_json(&again, json, small, 10, "round trip");
    CHECK(status == FEDKD_OK, "round trip parses: %s", fedkd_error_message());
    CHECK(again.num_layers == spec.num_layers &&
              memcmp(again.layers, spec.layers, sizeof(fedkd_layer_spec) * (size_t)spec.num_layers) == 0,
          "round trip keeps the layers");
    cJSON_Delete(json);

    /* The presets round-trip too, and a string selects a preset. */
    fedkd_model_spec cnn, cnn_again;
    fedkd_model_spec_preset(&cnn, "cnn", mnist, 10);
    json = fedkd_model_spec_to_json(&cnn);
    status = fedkd_model_spec_from_json(&cnn_again, json, mnist, 10, "round trip");
    CHECK(status == FEDKD_OK && cnn_again.num_layers == 12 &&
              memcmp(cnn_again.layers, cnn.layers, sizeof(fedkd_layer_spec) * 12) == 0,
          "cnn round trip: %s", fedkd_error_message());
    cJSON_Delete(json);
    status = parse("\"mlp\"", &spec, mnist, 10);
    CHECK(status == FEDKD_OK && strcmp(spec.name, "mlp") == 0 && spec.num_layers == 6,
          "string selects a preset");
}

/* A spec that must fail with FEDKD_ERR_CONFIG and a message containing every
 * one of the needles. */

static void check_errors(void)
{
    fedkd_model_spec spec;
    const fedkd_shape small = {1, 8, 8};

    EXPECT_ERROR("unknown preset", fedkd_model_spec_preset(&spec, "foo", mnist, 10),
                 "unknown model `foo`", "mlp", "cnn", "list of layers");
    EXPECT_ERROR("unknown preset in JSON", parse("\"resnet\"", &spec, mnist, 10),
                 "config key `model`", "resnet");
    EXPECT_ERROR("unknown layer type",
                 parse("[{\"type\": \"flatten\"}, {\"type\": \"relu\"}, {\"type\": \"dens\", "
                       "\"units\": 10}]",
                       &spec, mnist, 10),
                 "config key `model[2].type`", "unknown layer `dens`", "did you mean `dense`");
    EXPECT_ERROR("far-off layer type",
                 parse("[{\"type\": \"transformer\"}]", &spec, mnist, 10),
                 "model[0].type", "transformer", "conv2d");
    EXPECT_ERROR("unknown key",
                 parse("[{\"type\": \"flatten\"}, {\"type\": \"dense\", \"unit\": 10}]", &spec,
                       mnist, 10),
                 "model[1].unit`", "did you mean `units`");
    EXPECT_ERROR("key of another kind",
                 parse("[{\"type\": \"dense\", \"units\": 10, \"kernel\": 3}]", &spec, mnist, 10),
                 "model[0].kernel`", "does not take `kernel`");
    EXPECT_ERROR("output size mismatch",
                 parse("[{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 7}]", &spec,
                       mnist, 10),
                 "config key `model`", "outputs 7", "expected 10");
    EXPECT_ERROR("kernel too large",
                 parse("[{\"type\": \"conv2d\", \"filters\": 2, \"kernel\": 9},"
                       " {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 10}]",
                       &spec, small, 10),
                 "config key `model[0]`", "conv2d", "kernel 9");
    EXPECT_ERROR("pool too large",
                 parse("[{\"type\": \"maxpool\", \"kernel\": 4}, {\"type\": \"maxpool\", "
                       "\"kernel\": 3}, {\"type\": \"flatten\"}, {\"type\": \"dense\", "
                       "\"units\": 10}]",
                       &spec, small, 10),
                 "model[1]`", "maxpool", "kernel 3");
    EXPECT_ERROR("zero units",
                 parse("[{\"type\": \"dense\", \"units\": 0}]", &spec, mnist, 10),
                 "model[0]`", "dense", "units");
    EXPECT_ERROR("fractional units",
                 parse("[{\"type\": \"dense\", \"units\": 2.5}]", &spec, mnist, 10),
                 "model[0].units`", "integer", "2.5");
    EXPECT_ERROR("bad init",
                 parse("[{\"type\": \"dense\", \"units\": 10, \"init\": \"xavier\"}]", &spec,
                       mnist, 10),
                 "model[0].init`", "xavier", "glorot");
    EXPECT_ERROR("missing type", parse("[{\"units\": 10}]", &spec, mnist, 10),
                 "model[0].type`", "missing");
    EXPECT_ERROR("layer not an object", parse("[\"dense\"]", &spec, mnist, 10),
                 "model[0]`", "object");
    EXPECT_ERROR("empty list", parse("[]", &spec, mnist, 10),
                 "config key `model`", "layers");
    EXPECT_ERROR("wrong type", parse("42", &spec, mnist, 10),
                 "config key `model`", "preset", "42");
    EXPECT_ERROR("cnn on tiny images", fedkd_model_spec_preset(&spec, "cnn", small, 10),
                 "model `cnn` layer 3 (conv2d)", "kernel 5");

    /* A spec built by hand is checked again by fedkd_model_create. */
    fedkd_model_spec_preset(&spec, "mlp", mnist, 10);
    spec.layers[3].units = -5;
    fedkd_model *model = NULL;
    EXPECT_ERROR("model_create with bad units", fedkd_model_create(&model, &spec, 4),
                 "layer 3 (dense)", "units", "-5");
    CHECK(model == NULL, "failed create leaves NULL");
    fedkd_model_spec_preset(&spec, "mlp", mnist, 10);
    snprintf(spec.layers[2].kind, sizeof spec.layers[2].kind, "gelu");
    EXPECT_ERROR("model_create with unknown kind", fedkd_model_create(&model, &spec, 4),
                 "layer 2", "gelu");
}

int main(void)
{
    check_mlp();
    check_cnn();
    check_json();
    check_errors();
    return test_finish("test_model_spec");
}
