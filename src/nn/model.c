/* Models: a chain of layers over one flat parameter buffer, one flat gradient
 * buffer and one activation workspace sized once for max_batch, so that
 * forward and backward never allocate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

/* Activation views start on 64-byte boundaries. */
#define FLOATS_PER_LINE 16

static size_t round_up_to_line(size_t floats)
{
    return (floats + FLOATS_PER_LINE - 1) / FLOATS_PER_LINE * FLOATS_PER_LINE;
}

void fedkd_nn_format_location(char *out, size_t size, const char *where, int where_is_key,
                              const char *suffix)
{
    size_t length = strlen(where);
    if (where_is_key && length > 0 && where[length - 1] == '`')
        snprintf(out, size, "%.*s%s`", (int)(length - 1), where, suffix);
    else
        snprintf(out, size, "%s%s", where, suffix);
}

static int is_normalisation(const fedkd_layer_kind *kind)
{
    return kind == &fedkd_layer_kind_batchnorm || kind == &fedkd_layer_kind_groupnorm;
}

/* Where flat layer i sits in the spec as written: "[3]" at the top level,
 * "[3].layers[1]" inside the residual block that is the 4th top-level
 * entry (where_is_key), or " layer 3" / " layer 3 (in block layer 7)". */
static void layer_path(const fedkd_model_spec *spec, int i, int where_is_key, char *out,
                       size_t size)
{
    int owner = -1;
    for (int e = i + 1; e < spec->num_layers; e++)
        if (strcmp(spec->layers[e].kind, "residual") == 0) {
            if (e - spec->layers[e].body <= i) owner = e;
            break;
        }
    /* Top-level entries before the target: every flat entry before it,
     * less the bodies of the blocks up to and including it. */
    int target = owner >= 0 ? owner : i, top = target;
    for (int j = 0; j <= target; j++)
        if (strcmp(spec->layers[j].kind, "residual") == 0 && spec->layers[j].body > 0)
            top -= spec->layers[j].body < j ? spec->layers[j].body : j;
    if (owner < 0)
        snprintf(out, size, where_is_key ? "[%d]" : " layer %d", where_is_key ? top : i);
    else if (where_is_key)
        snprintf(out, size, "[%d].layers[%d]", top, i - (owner - spec->layers[owner].body));
    else
        snprintf(out, size, " layer %d", i);
}

fedkd_status fedkd_nn_configure_layers(fedkd_layer *layers, const fedkd_model_spec *spec,
                                       const char *where, int where_is_key,
                                       size_t *num_params)
{
    fedkd_shape shape = spec->input;
    if (spec->num_layers < 1 || spec->num_layers > FEDKD_MAX_LAYERS)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected 1 to %d layers, got %d", where,
                          FEDKD_MAX_LAYERS, spec->num_layers);
    if (shape.channels < 1 || shape.height < 1 || shape.width < 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: the input shape %dx%dx%d is not positive",
                          where, shape.channels, shape.height, shape.width);
    if (spec->num_classes < 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected at least 1 class, got %d", where,
                          spec->num_classes);

    size_t offset = 0;
    for (int i = 0; i < spec->num_layers; i++) {
        fedkd_layer *layer = &layers[i];
        char location[256], suffix[64];
        layer_path(spec, i, where_is_key, suffix, sizeof suffix);
        fedkd_nn_format_location(location, sizeof location, where, where_is_key, suffix);

        memset(layer, 0, sizeof *layer);
        layer->spec = spec->layers[i];
        layer->spec.kind[sizeof layer->spec.kind - 1] = '\0';
        layer->kind = fedkd_layer_kind_find(layer->spec.kind);
        if (!layer->kind)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "%s: unknown layer kind `%s`: expected dense, conv2d, maxpool, "
                              "avgpool, relu, flatten, batchnorm, groupnorm or residual",
                              location, layer->spec.kind);
        if (layer->spec.init != FEDKD_INIT_DEFAULT && layer->spec.init != FEDKD_INIT_HE &&
            layer->spec.init != FEDKD_INIT_GLOROT)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s (%s): invalid init %d", location,
                              layer->kind->name, (int)layer->spec.init);
        layer->in_shape = shape;
        if (layer->kind == &fedkd_layer_kind_residual) {
            int body = layer->spec.body;
            if (body < 1 || body > i)
                return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                  "%s (residual): expected a body of 1 to %d layers, got %d",
                                  location, i, body);
            for (int j = i - body; j < i; j++)
                if (layers[j].kind == &fedkd_layer_kind_residual)
                    return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                      "%s (residual): a residual block inside another one is not "
                                      "supported",
                                      location);
            layer->skip_shape = layers[i - body].in_shape;
        }
        fedkd_status status = layer->kind->configure(layer);
        if (status != FEDKD_OK) {
            char reason[512];
            snprintf(reason, sizeof reason, "%s", fedkd_error_message());
            return FEDKD_FAIL(status, "%s (%s): %s", location, layer->kind->name, reason);
        }
        layer->param_offset = offset;
        offset += layer->num_params;
        shape = layer->out_shape;
    }
    /* A layer feeds a ReLU when the next layer is one, or the next layers
     * are normalisations and then a ReLU (conv, batchnorm, relu). */
    for (int i = 0; i + 1 < spec->num_layers; i++) {
        int next = i + 1;
        while (next + 1 < spec->num_layers && is_normalisation(layers[next].kind)) next++;
        layers[i].followed_by_relu = layers[next].kind == &fedkd_layer_kind_relu;
    }
    /* A relu then a 2x2 / 2 maxpool: one pass each way (maxpool.c). Not
     * in models with residual blocks, whose shortcuts read activations and
     * add gradients between layers. */
    int residual = 0;
    for (int i = 0; i < spec->num_layers; i++)
        residual |= layers[i].kind == &fedkd_layer_kind_residual;
    for (int i = 0; !residual && i + 1 < spec->num_layers; i++) {
        const fedkd_layer_spec *pool = &layers[i + 1].spec;
        if (layers[i].kind == &fedkd_layer_kind_relu &&
            layers[i + 1].kind == &fedkd_layer_kind_maxpool && pool->kernel == 2 &&
            (pool->stride == 0 || pool->stride == 2)) {
            layers[i].relu_fused = 1;
            layers[i + 1].relu_fused = 1;
        }
    }

    size_t outputs = fedkd_shape_size(shape);
    if (outputs != (size_t)spec->num_classes)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: the last layer outputs %zu values, expected %d (the number of "
                          "classes)",
                          where, outputs, spec->num_classes);
    if (num_params) *num_params = offset;
    return FEDKD_OK;
}

/* ---- presets ------------------------------------------------------------- */

static void add_layer(fedkd_model_spec *spec, const char *kind, int units, int filters,
                      int kernel, int stride, int padding)
{
    fedkd_layer_spec *layer = &spec->layers[spec->num_layers++];
    memset(layer, 0, sizeof *layer);
    snprintf(layer->kind, sizeof layer->kind, "%s", kind);
    layer->units = units;
    layer->filters = filters;
    layer->kernel = kernel;
    layer->stride = stride;
    layer->padding = padding;
}

static void build_mlp(fedkd_model_spec *spec)
{
    add_layer(spec, "flatten", 0, 0, 0, 0, 0);
    add_layer(spec, "dense", 200, 0, 0, 0, 0);
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
    add_layer(spec, "dense", 200, 0, 0, 0, 0);
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
    add_layer(spec, "dense", spec->num_classes, 0, 0, 0, 0);
}

/* LeNet-5 style; padding 2 on the first conv keeps 28x28 at 28x28. */
static void build_cnn(fedkd_model_spec *spec)
{
    add_layer(spec, "conv2d", 0, 6, 5, 1, 2);
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
    add_layer(spec, "maxpool", 0, 0, 2, 0, 0);
    add_layer(spec, "conv2d", 0, 16, 5, 1, 0);
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
    add_layer(spec, "maxpool", 0, 0, 2, 0, 0);
    add_layer(spec, "flatten", 0, 0, 0, 0, 0);
    add_layer(spec, "dense", 120, 0, 0, 0, 0);
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
    add_layer(spec, "dense", 84, 0, 0, 0, 0);
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
    add_layer(spec, "dense", spec->num_classes, 0, 0, 0, 0);
}

/* A ResNet basic block: conv3x3, batchnorm, relu, conv3x3, batchnorm, plus
 * the shortcut (identity, or 1x1 conv + batchnorm when the block changes
 * the width or the plane), then relu. */
static void add_basic_block(fedkd_model_spec *spec, int filters, int stride, int project)
{
    add_layer(spec, "conv2d", 0, filters, 3, stride, 1);
    add_layer(spec, "batchnorm", 0, 0, 0, 0, 0);
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
    add_layer(spec, "conv2d", 0, filters, 3, 1, 1);
    add_layer(spec, "batchnorm", 0, 0, 0, 0, 0);
    add_layer(spec, "residual", 0, 0, 0, 0, 0);
    spec->layers[spec->num_layers - 1].body = 5;
    spec->layers[spec->num_layers - 1].projection =
        project ? FEDKD_PROJECTION_CONV_BATCHNORM : FEDKD_PROJECTION_NONE;
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
}

/* ResNet for 32x32 images (He et al. 2016, section 4.2): 6n + 2 layers with
 * n blocks per stage; n = 1 is the resnet8 FedDF trains on CIFAR-10. */
static void build_resnet(fedkd_model_spec *spec, int blocks_per_stage)
{
    add_layer(spec, "conv2d", 0, 16, 3, 1, 1);
    add_layer(spec, "batchnorm", 0, 0, 0, 0, 0);
    add_layer(spec, "relu", 0, 0, 0, 0, 0);
    const int widths[3] = {16, 32, 64};
    int channels = 16;
    for (int stage = 0; stage < 3; stage++)
        for (int b = 0; b < blocks_per_stage; b++) {
            int stride = stage > 0 && b == 0 ? 2 : 1;
            add_basic_block(spec, widths[stage], stride, stride != 1 || channels != widths[stage]);
            channels = widths[stage];
        }
    add_layer(spec, "avgpool", 0, 0, 0, 0, 0);
    spec->layers[spec->num_layers - 1].global = 1;
    add_layer(spec, "flatten", 0, 0, 0, 0, 0);
    add_layer(spec, "dense", spec->num_classes, 0, 0, 0, 0);
}

static void build_resnet8(fedkd_model_spec *spec) { build_resnet(spec, 1); }
static void build_resnet20(fedkd_model_spec *spec) { build_resnet(spec, 3); }

typedef struct model_preset {
    const char *name;
    void (*build)(fedkd_model_spec *spec);
} model_preset;

static const model_preset model_presets[] = {
    {"mlp", build_mlp},
    {"cnn", build_cnn},
    {"resnet8", build_resnet8},
    {"resnet20", build_resnet20},
    {NULL, NULL},
};

fedkd_status fedkd_model_spec_preset(fedkd_model_spec *spec, const char *name,
                                     fedkd_shape input, int num_classes)
{
    const model_preset *preset = model_presets;
    while (preset->name && (!name || strcmp(preset->name, name) != 0)) preset++;
    if (!preset->name)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "unknown model `%s`: expected mlp, cnn, resnet8, resnet20 or a list "
                          "of layers",
                          name ? name : "(null)");
    memset(spec, 0, sizeof *spec);
    snprintf(spec->name, sizeof spec->name, "%s", preset->name);
    spec->input = input;
    spec->num_classes = num_classes;
    preset->build(spec);

    /* Check the geometry now, so that a preset too big for the dataset's
     * images is reported before any model is built. */
    fedkd_layer *layers = calloc(FEDKD_MAX_LAYERS, sizeof *layers);
    if (!layers) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory checking model `%s`", name);
    char where[64];
    snprintf(where, sizeof where, "model `%s`", preset->name);
    fedkd_status status = fedkd_nn_configure_layers(layers, spec, where, 0, NULL);
    free(layers);
    return status;
}

/* ---- models ------------------------------------------------------------- */

/* Layers below the first one with parameters need no gradient: the
 * backward pass stops there, and does not compute that layer's input
 * gradient either (for the mlp this skips a (batch, 784) GEMM, a quarter
 * of the step). */
static int first_trainable_layer(const fedkd_model *model)
{
    int first = 0;
    while (first < model->num_layers - 1 && model->layers[first].num_params == 0) first++;
    return first;
}

/* The activation views of a configured model for batches of max_batch:
 * offsets[i] of activation i in one buffer of *total floats, the largest
 * activation whose gradient the backward pass holds (for the two gradient
 * buffers: an input of a layer above the first trainable one, for the mlp
 * 200 floats a sample and not the image's 784; at least 1) and the largest
 * scratch any layer needs; saved[i] is where layer i's saved floats start
 * in the same buffer. Flatten outputs alias their inputs, and so do the
 * outputs of relus fused into the maxpool after them (relu_fused); every
 * other activation gets its own view. */
static void plan_buffers(const fedkd_model *model, int max_batch, size_t *offsets, size_t *saved,
                         size_t *total, size_t *largest, size_t *scratch)
{
    *total = *largest = *scratch = 0;
    int first_trainable = first_trainable_layer(model);
    for (int i = 0; i <= model->num_layers; i++) {
        fedkd_shape shape = i == 0 ? model->spec.input : model->layers[i - 1].out_shape;
        size_t floats = fedkd_shape_size(shape) * (size_t)max_batch;
        if (i > first_trainable && i < model->num_layers && floats > *largest) *largest = floats;
        if (i > 0 && (model->layers[i - 1].kind == &fedkd_layer_kind_flatten ||
                      (model->layers[i - 1].kind == &fedkd_layer_kind_relu &&
                       model->layers[i - 1].relu_fused))) {
            offsets[i] = offsets[i - 1];
            continue;
        }
        offsets[i] = *total;
        *total += round_up_to_line(floats);
    }
    for (int i = 0; i < model->num_layers; i++) {
        const fedkd_layer *layer = &model->layers[i];
        size_t floats = layer->kind->scratch_floats(layer, max_batch);
        /* the first trainable layer's weight gradient, when dense, packs
         * d_output there (dense_backward, fedkd_optimizer_backward_step) */
        if (layer == fedkd_nn_first_dense_layer(model) &&
            fedkd_nn_dense_sgd_vector(layer->spec.units, (int)fedkd_shape_size(layer->in_shape)))
            floats = fedkd_nn_dense_sgd_scratch_floats(max_batch, layer->spec.units);
        if (floats > *scratch) *scratch = floats;
    }
    if (*largest == 0) *largest = 1;
    /* What layers keep from forward to backward, after the activations. */
    for (int i = 0; i < model->num_layers; i++) {
        const fedkd_layer *layer = &model->layers[i];
        size_t floats = layer->kind->saved_floats ? layer->kind->saved_floats(layer, max_batch) : 0;
        saved[i] = *total;
        *total += round_up_to_line(floats);
    }
}

static int has_residual(const fedkd_model *model)
{
    for (int i = 0; i < model->num_layers; i++)
        if (model->layers[i].kind == &fedkd_layer_kind_residual) return 1;
    return 0;
}

/* Copies the spec into a zeroed model and configures its layers. */
static fedkd_status configure_model(fedkd_model *model, const fedkd_model_spec *spec)
{
    model->spec = *spec;
    model->spec.name[sizeof model->spec.name - 1] = '\0';
    model->num_layers = spec->num_layers;
    char where[64];
    snprintf(where, sizeof where, "model `%s`",
             model->spec.name[0] ? model->spec.name : "custom");
    return fedkd_nn_configure_layers(model->layers, &model->spec, where, 0, &model->num_params);
}

fedkd_status fedkd_model_estimate(const fedkd_model_spec *spec, int max_batch, size_t *num_params,
                                  double *bytes)
{
    fedkd_model *model = calloc(1, sizeof *model);
    if (!model) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory estimating a model");
    fedkd_status status = configure_model(model, spec);
    if (!status) {
        size_t offsets[FEDKD_MAX_LAYERS + 1], saved[FEDKD_MAX_LAYERS];
        size_t total = 0, largest = 0, scratch = 0;
        plan_buffers(model, max_batch > 0 ? max_batch : 1, offsets, saved, &total, &largest,
                     &scratch);
        *num_params = model->num_params;
        /* Parameters and gradients, activations, two (three with residual
         * blocks) gradient buffers, scratch; in double: a size that overflows
         * size_t is still a number to report. */
        double gradient_buffers = has_residual(model) ? 3.0 : 2.0;
        *bytes = sizeof(float) * (2.0 * (double)model->num_params + (double)total +
                                  gradient_buffers * (double)round_up_to_line(largest) +
                                  (double)scratch);
    }
    free(model);
    return status;
}

fedkd_status fedkd_model_create(fedkd_model **out, const fedkd_model_spec *spec, int max_batch)
{
    fedkd_status status = FEDKD_OK;
    fedkd_model *model = NULL;
    if (!out || !spec)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "fedkd_model_create: out and spec must not be NULL");
    *out = NULL;
    if (max_batch < 1)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "fedkd_model_create: expected max_batch >= 1, got %d",
                          max_batch);

    model = calloc(1, sizeof *model);
    if (!model) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory allocating a model");
    model->max_batch = max_batch;
    status = configure_model(model, spec);
    if (status != FEDKD_OK) goto fail;

    /* A model of only parameter-free layers still gets valid (unused) buffers. */
    size_t param_floats = model->num_params > 0 ? model->num_params : 1;
    model->params = fedkd_alloc(param_floats * sizeof(float));
    model->grads = fedkd_alloc(param_floats * sizeof(float));
    if (!model->params || !model->grads) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory allocating %zu parameters of model `%s`",
                            model->num_params, model->spec.name);
        goto fail;
    }

    size_t offsets[FEDKD_MAX_LAYERS + 1], saved[FEDKD_MAX_LAYERS];
    size_t total = 0, largest = 0, scratch = 0;
    plan_buffers(model, max_batch, offsets, saved, &total, &largest, &scratch);
    model->activation_floats = total;
    model->scratch_floats_per_pass = scratch;

    float *activations = fedkd_alloc(total * sizeof(float));
    float *d_activations = fedkd_alloc(2 * round_up_to_line(largest) * sizeof(float));
    if (!activations || !d_activations) {
        fedkd_free(activations);
        fedkd_free(d_activations);
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM,
                            "out of memory allocating activations of model `%s` for batch %d",
                            model->spec.name, max_batch);
        goto fail;
    }
    for (int i = 0; i <= model->num_layers; i++) model->activations[i] = activations + offsets[i];
    model->d_activations[0] = d_activations;
    model->d_activations[1] = d_activations + round_up_to_line(largest);
    if (has_residual(model)) {
        model->d_skip = fedkd_alloc(round_up_to_line(largest) * sizeof(float));
        if (!model->d_skip) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM,
                                "out of memory allocating gradients of model `%s` for batch %d",
                                model->spec.name, max_batch);
            goto fail;
        }
    }
    for (int i = 0; i < model->num_layers; i++) {
        fedkd_layer *layer = &model->layers[i];
        if (layer->kind->saved_floats && layer->kind->saved_floats(layer, max_batch) > 0)
            layer->saved = activations + saved[i];
        if (layer->kind == &fedkd_layer_kind_residual) {
            layer->skip = model->activations[i - layer->spec.body];
            layer->d_skip = model->d_skip;
        }
    }
    if (scratch > 0) {
        model->scratch = fedkd_alloc(scratch * sizeof(float));
        if (!model->scratch) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM,
                                "out of memory allocating %zu floats of scratch for model `%s`",
                                scratch, model->spec.name);
            goto fail;
        }
    }
    *out = model;
    return FEDKD_OK;

fail:
    fedkd_model_destroy(&model);
    return status;
}

void fedkd_model_destroy(fedkd_model **model)
{
    if (!model || !*model) return;
    fedkd_model *m = *model;
    fedkd_free(m->params);
    fedkd_free(m->grads);
    fedkd_free(m->activations[0]);
    fedkd_free(m->d_activations[0]);
    fedkd_free(m->d_skip);
    fedkd_free(m->scratch);
    free(m);
    *model = NULL;
}

/* Layer i draws from the stream (seed, FEDKD_RNG_INIT, model_id, i), so a
 * layer's initial weights do not depend on the layers before it and models
 * with the same id and spec start identical on every rank. */
void fedkd_model_init_params(fedkd_model *model, uint64_t seed, uint64_t model_id)
{
    memset(model->params, 0, model->num_params * sizeof *model->params);
    for (int i = 0; i < model->num_layers; i++) {
        const fedkd_layer *layer = &model->layers[i];
        if (layer->num_params == 0) continue;
        fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_INIT, model_id, (uint64_t)i);
        layer->kind->init_params(layer, model->params + layer->param_offset, &rng);
    }
}

/* The forward pass from layer `first` on (the layers below it done). */
static const float *forward_from(fedkd_model *model, int first, int batch)
{
    for (int i = 0; i < model->num_layers; i++) {
        fedkd_layer *layer = &model->layers[i];
        layer->training = model->training;
        if (i < first) continue;
        layer->kind->forward(layer, model->params + layer->param_offset, model->activations[i],
                             model->activations[i + 1], batch, model->scratch);
    }
    return model->activations[model->num_layers];
}

const float *fedkd_model_forward(fedkd_model *model, const float *input, int batch)
{
    if (batch < 1 || batch > model->max_batch) return NULL;
    if (input != model->activations[0])
        memcpy(model->activations[0], input,
               fedkd_shape_size(model->spec.input) * (size_t)batch * sizeof *input);
    return forward_from(model, 0, batch);
}

const float *fedkd_model_forward_rows(fedkd_model *model, const float *const *rows, int batch)
{
    if (batch < 1 || batch > model->max_batch) return NULL;
    size_t sample = fedkd_shape_size(model->spec.input);
    float *input = model->activations[0];
    /* The first layer that is not a flatten aliasing the input: a dense
     * one reads the rows in place (and copies them into the input as it
     * goes, for the backward pass). */
    int first = 0;
    while (first < model->num_layers && model->layers[first].kind == &fedkd_layer_kind_flatten &&
           model->activations[first + 1] == input)
        first++;
    const fedkd_layer *layer = first < model->num_layers ? &model->layers[first] : NULL;
    if (layer && layer->kind == &fedkd_layer_kind_dense &&
        fedkd_nn_dense_forward_rows(layer, model->params + layer->param_offset, rows, input,
                                    model->activations[first + 1], batch))
        return forward_from(model, first + 1, batch);
    for (int n = 0; n < batch; n++)
        memcpy(input + (size_t)n * sample, rows[n], sample * sizeof *input);
    return forward_from(model, 0, batch);
}

float *fedkd_model_input(fedkd_model *model) { return model->activations[0]; }

/* The backward pass of layers num_layers - 1 down to `lowest`; returns the
 * gradient of layer lowest's input (NULL when lowest is the first
 * trainable layer, whose input gradient nothing needs). */
static const float *backward_down_to(fedkd_model *model, const float *d_logits, int batch,
                                     int lowest)
{
    int first_trainable = first_trainable_layer(model);
    const float *d_output = d_logits;
    int next = 0;
    for (int i = model->num_layers - 1; i >= lowest; i--) {
        const fedkd_layer *layer = &model->layers[i];
        /* the maxpool after it wrote this relu's input gradient */
        if (layer->kind == &fedkd_layer_kind_relu && layer->relu_fused) continue;
        float *d_input = i > first_trainable ? model->d_activations[next] : NULL;
        layer->kind->backward(layer, model->params + layer->param_offset, model->activations[i],
                              model->activations[i + 1], d_output, d_input,
                              model->grads + layer->param_offset, batch, model->scratch);
        /* Activation i is the input of a residual block's body: add the
         * gradient its shortcut left. Blocks do not nest, so at most one
         * shortcut gradient is pending at a time. */
        for (int r = i + 1; d_input && r < model->num_layers; r++) {
            const fedkd_layer *block = &model->layers[r];
            if (block->kind != &fedkd_layer_kind_residual) continue;
            if (r - block->spec.body == i) {
                size_t count = fedkd_shape_size(layer->in_shape) * (size_t)batch;
                for (size_t k = 0; k < count; k++) d_input[k] += model->d_skip[k];
            }
            break;
        }
        d_output = d_input;
        next ^= 1;
    }
    return d_output;
}

void fedkd_model_backward(fedkd_model *model, const float *d_logits, int batch)
{
    if (batch < 1 || batch > model->max_batch) return;
    model->grads_zero = 0;
    backward_down_to(model, d_logits, batch, first_trainable_layer(model));
}

const float *fedkd_nn_backward_above(fedkd_model *model, const float *d_logits, int batch,
                                     int stop)
{
    model->grads_zero = 0;
    return backward_down_to(model, d_logits, batch, stop + 1);
}

const fedkd_layer *fedkd_nn_first_dense_layer(const fedkd_model *model)
{
    const fedkd_layer *layer = &model->layers[first_trainable_layer(model)];
    return layer->kind == &fedkd_layer_kind_dense ? layer : NULL;
}

void fedkd_model_zero_grad(fedkd_model *model)
{
    memset(model->grads, 0, model->num_params * sizeof *model->grads);
    model->grads_zero = 1;
}

int fedkd_model_num_classes(const fedkd_model *model) { return model->spec.num_classes; }

double fedkd_model_forward_macs(const fedkd_model *model)
{
    double macs = 0.0;
    for (int i = 0; i < model->num_layers; i++) {
        const fedkd_layer *layer = &model->layers[i];
        if (layer->kind == &fedkd_layer_kind_dense) {
            macs += (double)fedkd_shape_size(layer->in_shape) * (double)layer->spec.units;
        } else if (layer->kind == &fedkd_layer_kind_conv2d) {
            fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
            macs += (double)g.filters * (double)g.out_height * (double)g.out_width *
                    (double)g.in_channels * (double)g.kernel * (double)g.kernel;
        } else if (layer->kind == &fedkd_layer_kind_residual &&
                   layer->spec.projection != FEDKD_PROJECTION_NONE) {
            macs += (double)fedkd_shape_size(layer->out_shape) *
                    (double)layer->skip_shape.channels;
        }
    }
    return macs;
}

int fedkd_model_spec_min_train_batch(const fedkd_model_spec *spec)
{
    for (int i = 0; i < spec->num_layers && i < FEDKD_MAX_LAYERS; i++) {
        const fedkd_layer_spec *layer = &spec->layers[i];
        if (strncmp(layer->kind, "batchnorm", sizeof layer->kind) == 0 ||
            (strncmp(layer->kind, "residual", sizeof layer->kind) == 0 &&
             layer->projection == FEDKD_PROJECTION_CONV_BATCHNORM))
            return 2;
    }
    return 1;
}

fedkd_status fedkd_model_spec_param_ranges(const fedkd_model_spec *spec, fedkd_param_class which,
                                           size_t *begin, size_t *end, int max, int *count)
{
    fedkd_layer *layers = calloc(FEDKD_MAX_LAYERS, sizeof *layers);
    if (!layers) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading a model's layers");
    fedkd_status status = fedkd_nn_configure_layers(layers, spec, "model", 0, NULL);
    *count = 0;
    for (int i = 0; !status && i < spec->num_layers; i++) {
        const fedkd_layer *layer = &layers[i];
        size_t first = which == FEDKD_PARAMS_NORM ? layer->norm_offset : layer->stats_offset;
        size_t length = which == FEDKD_PARAMS_NORM ? layer->norm_count : layer->stats_count;
        if (length == 0) continue;
        if (*count < max) {
            begin[*count] = layer->param_offset + first;
            end[*count] = layer->param_offset + first + length;
        }
        (*count)++;
    }
    free(layers);
    return status;
}
