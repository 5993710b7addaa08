/* Optimizers as a table by name. A step runs over ranges of the parameters
 * (fedkd_optimizer_step_model leaves out the running statistics). Each keeps its state in one flat buffer so
 * that a checkpoint saves and restores it as a single array:
 *   sgd:  velocity (num_params)
 *   adam: first moment (num_params), second moment (num_params), step count (1)
 * Adam's step count lives in the buffer as a float (exact up to 2^24 steps)
 * so that restoring the buffer restores the bias correction too.
 *
 * A step may also clear the gradients it has read (fedkd_optimizer_step_model_clear_grads):
 * the training loops then need no separate zero_grad pass over the whole
 * gradient buffer before the next backward pass. Clearing writes +0.0f into
 * each gradient after it is read, so a clearing step computes the same bits
 * as a plain step followed by a memset to zero. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

typedef struct optimizer_kind {
    const char *name;
    size_t (*state_floats)(size_t num_params);
    /* Once per step, before the ranges (NULL: nothing). */
    void (*begin_step)(fedkd_optimizer *optimizer);
    /* Steps params[begin, end) from grads[begin, end) and, if clear_grads,
     * sets those gradients to zero after reading them. grads is written only
     * when clear_grads is set. params, grads and the state do not overlap. */
    void (*step)(fedkd_optimizer *optimizer, float *params, float *grads, size_t begin,
                 size_t end, int clear_grads);
} optimizer_kind;

struct fedkd_optimizer {
    const optimizer_kind *kind;
    fedkd_optimizer_settings settings;
    size_t num_params;
    float *state;       /* (state_floats) */
    size_t state_floats;
    /* SGD after a reset: the velocity is zero but not written; the next
     * step writes it without reading it (fedkd_optimizer_reset). */
    int fresh;
    /* Set for one fresh SGD step (fedkd_optimizer_step_model_clear_grads_into):
     * the step reads the parameters where they are and writes them here. */
    float *into;
};

static size_t sgd_state_floats(size_t num_params) { return num_params; }

/* One pass of SGD over [0, count) of the given views. Inlined into each
 * caller with nesterov, clear_grads and fresh constant, so that every
 * variant is a branch-free loop the compiler vectorises; each element's
 * arithmetic is the same in every lane and every clone. A fresh velocity
 * (zero, not written since a reset) is not read: momentum * 0 + g is
 * 0 + g (momentum is finite and >= 0), which is what the step computes. */
static inline __attribute__((always_inline)) void
sgd_range(float *restrict params, float *restrict grads, float *restrict velocity, size_t count,
          float lr, float momentum, float decay, int nesterov, int clear_grads, int fresh)
{
    for (size_t i = 0; i < count; i++) {
        params[i] = fedkd_nn_sgd_one(grads[i], params[i], &velocity[i], lr, momentum, decay,
                                     nesterov, fresh);
        if (clear_grads) grads[i] = 0.0f;
    }
}

/* The fresh step out of place: reads source, writes params, otherwise the
 * same operations as sgd_range's fresh step in the same order (0.0f + g
 * included, which is not g for g = -0), so the same bits. */
static inline __attribute__((always_inline)) void
sgd_range_into(float *restrict params, const float *restrict source, float *restrict grads,
               float *restrict velocity, size_t count, float lr, float momentum, float decay,
               int nesterov, int clear_grads)
{
    for (size_t i = 0; i < count; i++) {
        params[i] = fedkd_nn_sgd_one(grads[i], source[i], &velocity[i], lr, momentum, decay,
                                     nesterov, 1);
        if (clear_grads) grads[i] = 0.0f;
    }
}

typedef void (*sgd_variant)(float *restrict params, float *restrict grads,
                            float *restrict velocity, size_t count, float lr, float momentum,
                            float decay);

/* One clone set per constant (nesterov, clear_grads, fresh). */
#define SGD_VARIANT(NAME, NESTEROV, CLEAR, FRESH)                                                 \
    FEDKD_NN_CLONES                                                                               \
    static void NAME(float *restrict params, float *restrict grads, float *restrict velocity,    \
                     size_t count, float lr, float momentum, float decay)                         \
    {                                                                                             \
        sgd_range(params, grads, velocity, count, lr, momentum, decay, NESTEROV, CLEAR, FRESH);   \
    }
SGD_VARIANT(sgd_plain, 0, 0, 0)
SGD_VARIANT(sgd_plain_clear, 0, 1, 0)
SGD_VARIANT(sgd_nesterov, 1, 0, 0)
SGD_VARIANT(sgd_nesterov_clear, 1, 1, 0)
SGD_VARIANT(sgd_plain_fresh, 0, 0, 1)
SGD_VARIANT(sgd_plain_clear_fresh, 0, 1, 1)
SGD_VARIANT(sgd_nesterov_fresh, 1, 0, 1)
SGD_VARIANT(sgd_nesterov_clear_fresh, 1, 1, 1)

typedef void (*sgd_into_variant)(float *restrict params, const float *restrict source,
                                 float *restrict grads, float *restrict velocity, size_t count,
                                 float lr, float momentum, float decay);

#define SGD_INTO_VARIANT(NAME, NESTEROV, CLEAR)                                                   \
    FEDKD_NN_CLONES                                                                               \
    static void NAME(float *restrict params, const float *restrict source,                       \
                     float *restrict grads, float *restrict velocity, size_t count, float lr,     \
                     float momentum, float decay)                                                 \
    {                                                                                             \
        sgd_range_into(params, source, grads, velocity, count, lr, momentum, decay, NESTEROV,     \
                       CLEAR);                                                                    \
    }
SGD_INTO_VARIANT(sgd_plain_into, 0, 0)
SGD_INTO_VARIANT(sgd_plain_clear_into, 0, 1)
SGD_INTO_VARIANT(sgd_nesterov_into, 1, 0)
SGD_INTO_VARIANT(sgd_nesterov_clear_into, 1, 1)

/* By [nesterov][clear_grads]. */
static const sgd_into_variant sgd_into_variants[2][2] = {
    {sgd_plain_into, sgd_plain_clear_into},
    {sgd_nesterov_into, sgd_nesterov_clear_into},
};

/* By [fresh][nesterov][clear_grads]. */
static const sgd_variant sgd_variants[2][2][2] = {
    {{sgd_plain, sgd_plain_clear}, {sgd_nesterov, sgd_nesterov_clear}},
    {{sgd_plain_fresh, sgd_plain_clear_fresh}, {sgd_nesterov_fresh, sgd_nesterov_clear_fresh}},
};

/* Steps params[begin, end); the optimizer state is indexed like params. */
static void sgd_step(fedkd_optimizer *optimizer, float *params, float *grads, size_t begin,
                     size_t end, int clear_grads)
{
    const fedkd_optimizer_settings *s = &optimizer->settings;
    float *velocity = optimizer->state + begin;
    size_t count = end - begin;
    params += begin;
    grads += begin;
    if (optimizer->into) {
        sgd_into_variants[s->nesterov != 0][clear_grads != 0](optimizer->into + begin, params,
                                                             grads, velocity, count, s->lr,
                                                             s->momentum, s->weight_decay);
        return;
    }
    sgd_variants[optimizer->fresh != 0][s->nesterov != 0][clear_grads != 0](
        params, grads, velocity, count, s->lr, s->momentum, s->weight_decay);
}

static size_t adam_state_floats(size_t num_params) { return 2 * num_params + 1; }

static void adam_begin_step(fedkd_optimizer *optimizer)
{
    optimizer->state[2 * optimizer->num_params] += 1.0f;
}

static void adam_step(fedkd_optimizer *optimizer, float *params, float *grads, size_t begin,
                      size_t end, int clear_grads)
{
    const fedkd_optimizer_settings *s = &optimizer->settings;
    size_t n = optimizer->num_params;
    float *first = optimizer->state;
    float *second = optimizer->state + n;
    double t = (double)optimizer->state[2 * n];
    float correction1 = (float)(1.0 - pow((double)s->beta1, t));
    float correction2 = (float)(1.0 - pow((double)s->beta2, t));
    float beta1 = s->beta1, beta2 = s->beta2, lr = s->lr, eps = s->epsilon;
    float decay = s->weight_decay;
    for (size_t i = begin; i < end; i++) {
        float g = grads[i] + decay * params[i];
        first[i] = beta1 * first[i] + (1.0f - beta1) * g;
        second[i] = beta2 * second[i] + (1.0f - beta2) * g * g;
        float m_hat = first[i] / correction1;
        float v_hat = second[i] / correction2;
        params[i] -= lr * m_hat / (sqrtf(v_hat) + eps);
        if (clear_grads) grads[i] = 0.0f;
    }
}

static const optimizer_kind optimizer_kinds[] = {
    {"sgd", sgd_state_floats, NULL, sgd_step},
    {"adam", adam_state_floats, adam_begin_step, adam_step},
    {NULL, NULL, NULL, NULL},
};

fedkd_optimizer_settings fedkd_optimizer_default_settings(void)
{
    fedkd_optimizer_settings settings;
    memset(&settings, 0, sizeof settings);
    snprintf(settings.name, sizeof settings.name, "sgd");
    settings.lr = 0.01f;
    settings.momentum = 0.0f;
    settings.nesterov = 0;
    settings.weight_decay = 0.0f;
    settings.beta1 = 0.9f;
    settings.beta2 = 0.999f;
    settings.epsilon = 1e-8f;
    return settings;
}

static fedkd_status check_settings(const fedkd_optimizer_settings *s)
{
    if (!(s->lr >= 0.0f) || isinf(s->lr))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "optimizer `%s`: expected lr >= 0, got %g", s->name,
                          (double)s->lr);
    if (!(s->weight_decay >= 0.0f) || isinf(s->weight_decay))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "optimizer `%s`: expected weight_decay >= 0, got %g",
                          s->name, (double)s->weight_decay);
    if (!(s->momentum >= 0.0f && s->momentum < 1.0f))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "optimizer `%s`: expected momentum in [0, 1), got %g",
                          s->name, (double)s->momentum);
    if (!(s->beta1 >= 0.0f && s->beta1 < 1.0f))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "optimizer `%s`: expected beta1 in [0, 1), got %g",
                          s->name, (double)s->beta1);
    if (!(s->beta2 >= 0.0f && s->beta2 < 1.0f))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "optimizer `%s`: expected beta2 in [0, 1), got %g",
                          s->name, (double)s->beta2);
    if (!(s->epsilon > 0.0f) || isinf(s->epsilon))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "optimizer `%s`: expected epsilon > 0, got %g",
                          s->name, (double)s->epsilon);
    return FEDKD_OK;
}

fedkd_status fedkd_optimizer_create(fedkd_optimizer **out, const fedkd_optimizer_settings *settings,
                                    size_t num_params)
{
    fedkd_status status = FEDKD_OK;
    fedkd_optimizer *optimizer = NULL;
    if (!out || !settings)
        return FEDKD_FAIL(FEDKD_ERR_INVALID,
                          "fedkd_optimizer_create: out and settings must not be NULL");
    *out = NULL;

    char name[sizeof settings->name + 1];
    memcpy(name, settings->name, sizeof settings->name);
    name[sizeof settings->name] = '\0';
    const optimizer_kind *kind = optimizer_kinds;
    while (kind->name && strcmp(kind->name, name) != 0) kind++;
    if (!kind->name)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "unknown optimizer `%s`: expected sgd or adam", name);
    status = check_settings(settings);
    if (status != FEDKD_OK) return status;

    optimizer = calloc(1, sizeof *optimizer);
    if (!optimizer) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory allocating an optimizer");
    optimizer->kind = kind;
    optimizer->settings = *settings;
    optimizer->settings.name[sizeof optimizer->settings.name - 1] = '\0';
    optimizer->num_params = num_params;
    optimizer->state_floats = kind->state_floats(num_params);
    if (optimizer->state_floats > 0) {
        optimizer->state = fedkd_alloc(optimizer->state_floats * sizeof(float));
        if (!optimizer->state) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM,
                                "out of memory allocating %zu floats of `%s` optimizer state",
                                optimizer->state_floats, kind->name);
            goto fail;
        }
        /* Zeroed (fedkd_alloc): a new SGD is as after a reset. */
        optimizer->fresh = kind->step == sgd_step;
    }
    *out = optimizer;
    return FEDKD_OK;

fail:
    fedkd_optimizer_destroy(&optimizer);
    return status;
}

void fedkd_optimizer_destroy(fedkd_optimizer **optimizer)
{
    if (!optimizer || !*optimizer) return;
    fedkd_free((*optimizer)->state);
    free(*optimizer);
    *optimizer = NULL;
}

void fedkd_optimizer_step(fedkd_optimizer *optimizer, float *params, const float *grads)
{
    if (optimizer->kind->begin_step) optimizer->kind->begin_step(optimizer);
    /* Without clear_grads the step only reads grads. */
    optimizer->kind->step(optimizer, params, (float *)grads, 0, optimizer->num_params, 0);
    optimizer->fresh = 0;
}

/* Floats of each array that a hooked step prepares and steps at a time: the
 * hook's writes are still in the first-level cache when the step reads them. */
enum { HOOK_CHUNK_FLOATS = 2048 };

static void step_range(fedkd_optimizer *optimizer, fedkd_model *model, size_t begin, size_t end,
                       int clear_grads, fedkd_gradient_hook hook, void *context)
{
    if (!hook) {
        optimizer->kind->step(optimizer, model->params, model->grads, begin, end, clear_grads);
        return;
    }
    for (size_t first = begin; first < end; first += HOOK_CHUNK_FLOATS) {
        size_t last = end - first < HOOK_CHUNK_FLOATS ? end : first + HOOK_CHUNK_FLOATS;
        hook(context, model, first, last);
        optimizer->kind->step(optimizer, model->params, model->grads, first, last, clear_grads);
    }
}

/* The parameters a step covers: those the optimizer has state for, within
 * the model's. */
static size_t stepped_params(const fedkd_optimizer *optimizer, const fedkd_model *model)
{
    return optimizer->num_params < model->num_params ? optimizer->num_params
                                                      : model->num_params;
}

/* step_range over [begin, end) but for [skip_begin, skip_end). */
static void step_range_but(fedkd_optimizer *optimizer, fedkd_model *model, size_t begin,
                           size_t end, int clear_grads, fedkd_gradient_hook hook, void *context,
                           size_t skip_begin, size_t skip_end)
{
    size_t cut = skip_begin < end ? skip_begin : end;
    if (begin < cut) step_range(optimizer, model, begin, cut, clear_grads, hook, context);
    size_t resume = skip_end > begin ? skip_end : begin;
    if (resume < end) step_range(optimizer, model, resume, end, clear_grads, hook, context);
}

/* Steps every parameter the optimizer has state for but the running
 * statistics and [skip_begin, skip_end) (stepped already, gradients zero). */
static void step_model_but(fedkd_optimizer *optimizer, fedkd_model *model, int clear_grads,
                           fedkd_gradient_hook hook, void *context, size_t skip_begin,
                           size_t skip_end)
{
    if (optimizer->kind->begin_step) optimizer->kind->begin_step(optimizer);
    size_t next = 0, n = stepped_params(optimizer, model);
    for (int i = 0; i < model->num_layers; i++) {
        const fedkd_layer *layer = &model->layers[i];
        if (layer->stats_count == 0) continue;
        size_t stats = layer->param_offset + layer->stats_offset;
        if (stats > next)
            step_range_but(optimizer, model, next, stats, clear_grads, hook, context, skip_begin,
                           skip_end);
        next = stats + layer->stats_count;
        /* The running statistics have no gradient, but clearing leaves the
         * whole buffer as fedkd_model_zero_grad would; their state, never
         * stepped, is left zero after a reset. */
        if (clear_grads)
            memset(model->grads + stats, 0, layer->stats_count * sizeof *model->grads);
        if (optimizer->into)
            memcpy(optimizer->into + stats, model->params + stats,
                   layer->stats_count * sizeof *model->params);
        if (optimizer->fresh && stats < n)
            memset(optimizer->state + stats, 0,
                   (stats + layer->stats_count <= n ? layer->stats_count : n - stats) *
                       sizeof *optimizer->state);
    }
    if (n > next)
        step_range_but(optimizer, model, next, n, clear_grads, hook, context, skip_begin,
                       skip_end);
    size_t done = n > next ? n : next;
    if (clear_grads && model->num_params > done)
        memset(model->grads + done, 0, (model->num_params - done) * sizeof *model->grads);
    if (optimizer->into && model->num_params > done)
        memcpy(optimizer->into + done, model->params + done,
               (model->num_params - done) * sizeof *model->params);
    if (optimizer->fresh && optimizer->num_params > done)
        memset(optimizer->state + done, 0,
               (optimizer->num_params - done) * sizeof *optimizer->state);
    optimizer->fresh = 0;
    if (clear_grads) model->grads_zero = 1;
}

static void step_model(fedkd_optimizer *optimizer, fedkd_model *model, int clear_grads,
                       fedkd_gradient_hook hook, void *context)
{
    step_model_but(optimizer, model, clear_grads, hook, context, 0, 0);
}

void fedkd_optimizer_step_model(fedkd_optimizer *optimizer, fedkd_model *model)
{
    step_model(optimizer, model, 0, NULL, NULL);
}

void fedkd_optimizer_step_model_clear_grads(fedkd_optimizer *optimizer, fedkd_model *model,
                                            fedkd_gradient_hook hook, void *context)
{
    step_model(optimizer, model, 1, hook, context);
}

int fedkd_optimizer_can_step_into(const fedkd_optimizer *optimizer)
{
    return optimizer->kind->step == sgd_step && optimizer->fresh;
}

void fedkd_optimizer_step_model_clear_grads_into(fedkd_optimizer *optimizer, fedkd_model *model,
                                                 float *into, fedkd_gradient_hook hook,
                                                 void *context)
{
    if (fedkd_optimizer_can_step_into(optimizer)) {
        optimizer->into = into;
        step_model(optimizer, model, 1, hook, context);
        optimizer->into = NULL;
        return;
    }
    /* Any other step: copy, then step in place there. */
    float *params = model->params;
    memcpy(into, params, model->num_params * sizeof *params);
    model->params = into;
    step_model(optimizer, model, 1, hook, context);
    model->params = params;
}

int fedkd_nn_dense_sgd_mode = FEDKD_DENSE_SGD_AUTO;

/* The first trainable layer, when fedkd_nn_dense_weight_sgd can step its
 * weights inside the backward pass: a dense layer whose weight gradient the
 * backward pass would take from the same kernel (fedkd_nn_dense_own_grad),
 * SGD stepping in place or, on its first step after a reset, out of place
 * (into), no gradient hook, every gradient zero before the pass. NULL
 * otherwise. */
static const fedkd_layer *fusable_layer(fedkd_optimizer *optimizer, const fedkd_model *model,
                                        int batch, const float *into, fedkd_gradient_hook hook)
{
    if (hook || optimizer->kind->step != sgd_step || (into && !optimizer->fresh) ||
        !model->grads_zero || batch < 1 || batch > model->max_batch)
        return NULL;
    const fedkd_layer *layer = fedkd_nn_first_dense_layer(model);
    if (!layer) return NULL;
    size_t in = fedkd_shape_size(layer->in_shape);
    if (!fedkd_nn_dense_own_grad(layer->spec.units, (int)in) ||
        layer->param_offset + (size_t)layer->spec.units * in > stepped_params(optimizer, model))
        return NULL;
    return layer;
}

/* fedkd_optimizer_backward_step in place (into NULL) or out of place. */
static void backward_step(fedkd_optimizer *optimizer, fedkd_model *model, const float *d_logits,
                          int batch, float *into, fedkd_gradient_hook hook, void *context)
{
    const fedkd_layer *layer = fusable_layer(optimizer, model, batch, into, hook);
    if (!layer) {
        fedkd_model_backward(model, d_logits, batch);
        if (into)
            fedkd_optimizer_step_model_clear_grads_into(optimizer, model, into, hook, context);
        else
            step_model(optimizer, model, 1, hook, context);
        return;
    }
    int out = layer->spec.units, in = (int)fedkd_shape_size(layer->in_shape);
    size_t begin = layer->param_offset, end = begin + (size_t)out * (size_t)in;
    int first = (int)(layer - model->layers);
    const float *d_output = fedkd_nn_backward_above(model, d_logits, batch, first);
    /* The bias as dense_backward sums it; the weights step now, from a
     * gradient that stays in registers, and their gradients stay zero. */
    fedkd_nn_dense_bias_grad(d_output, batch, out, model->grads + end);
    const fedkd_optimizer_settings *s = &optimizer->settings;
    fedkd_dense_sgd sgd = {.lr = s->lr, .momentum = s->momentum, .decay = s->weight_decay,
                           .nesterov = s->nesterov != 0, .fresh = optimizer->fresh,
                           .plain_only = fedkd_nn_dense_sgd_mode == FEDKD_DENSE_SGD_PLAIN};
    fedkd_nn_dense_weight_sgd(d_output, model->activations[first], batch, out, in,
                              model->params + begin, (into ? into : model->params) + begin,
                              optimizer->state + begin, &sgd, model->scratch);
    /* The rest as fedkd_optimizer_step_model_clear_grads(_into) steps it
     * (that one clears the fresh mark). */
    optimizer->into = into;
    step_model_but(optimizer, model, 1, NULL, NULL, begin, end);
    optimizer->into = NULL;
}

void fedkd_optimizer_backward_step(fedkd_optimizer *optimizer, fedkd_model *model,
                                   const float *d_logits, int batch, fedkd_gradient_hook hook,
                                   void *context)
{
    backward_step(optimizer, model, d_logits, batch, NULL, hook, context);
}

void fedkd_optimizer_backward_step_into(fedkd_optimizer *optimizer, fedkd_model *model,
                                        const float *d_logits, int batch, float *into,
                                        fedkd_gradient_hook hook, void *context)
{
    backward_step(optimizer, model, d_logits, batch, into, hook, context);
}

/* SGD's velocity is not cleared here but marked fresh: the next step writes
 * it without reading it, which spares a pass over it (once per client and
 * round: 0.8 MB of writes for the mlp, 1000 times a round with 1000
 * clients). Whoever asks for the state gets it zeroed first. */
void fedkd_optimizer_reset(fedkd_optimizer *optimizer)
{
    if (!optimizer->state) return;
    if (optimizer->kind->step == sgd_step) {
        optimizer->fresh = 1;
        return;
    }
    memset(optimizer->state, 0, optimizer->state_floats * sizeof *optimizer->state);
}

float *fedkd_optimizer_state(fedkd_optimizer *optimizer, size_t *num_floats)
{
    if (optimizer->fresh) {
        memset(optimizer->state, 0, optimizer->state_floats * sizeof *optimizer->state);
        optimizer->fresh = 0;
    }
    if (num_floats) *num_floats = optimizer->state_floats;
    return optimizer->state;
}
