/* Optimizers as a table by name. A step runs over ranges of the parameters
 * (fedkd_optimizer_step_model leaves out the running statistics). Each keeps its state in one flat buffer so
 * that a checkpoint saves and restores it as a single array:
 *   sgd:  velocity (num_params)
 *   adam: first moment (num_params), second moment (num_params), step count (1)
 * Adam's step count lives in the buffer as a float (exact up to 2^24 steps)
 * so that restoring the buffer restores the bias correction too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/nn/nn.h"

typedef struct optimizer_kind {
    const char *name;
    size_t (*state_floats)(size_t num_params);
    /* Once per step, before the ranges (NULL: nothing). */
    void (*begin_step)(fedkd_optimizer *optimizer);
    void (*step)(fedkd_optimizer *optimizer, float *params, const float *grads, size_t begin,
                 size_t end);
} optimizer_kind;

struct fedkd_optimizer {
    const optimizer_kind *kind;
    fedkd_optimizer_settings settings;
    size_t num_params;
    float *state;       /* (state_floats) */
    size_t state_floats;
};

static size_t sgd_state_floats(size_t num_params) { return num_params; }

/* Steps params[begin, end); the optimizer state is indexed like params. */
static void sgd_step(fedkd_optimizer *optimizer, float *params, const float *grads, size_t begin,
                     size_t end)
{
    const fedkd_optimizer_settings *s = &optimizer->settings;
    float *velocity = optimizer->state;
    float lr = s->lr, momentum = s->momentum, decay = s->weight_decay;
    if (s->nesterov) {
        for (size_t i = begin; i < end; i++) {
            float g = grads[i] + decay * params[i];
            velocity[i] = momentum * velocity[i] + g;
            params[i] -= lr * (g + momentum * velocity[i]);
        }
    } else {
        for (size_t i = begin; i < end; i++) {
            float g = grads[i] + decay * params[i];
            velocity[i] = momentum * velocity[i] + g;
            params[i] -= lr * velocity[i];
        }
    }
}

static size_t adam_state_floats(size_t num_params) { return 2 * num_params + 1; }

static void adam_begin_step(fedkd_optimizer *optimizer)
{
    optimizer->state[2 * optimizer->num_params] += 1.0f;
}

static void adam_step(fedkd_optimizer *optimizer, float *params, const float *grads, size_t begin,
                      size_t end)
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
    optimizer->kind->step(optimizer, params, grads, 0, optimizer->num_params);
}

void fedkd_optimizer_step_model(fedkd_optimizer *optimizer, fedkd_model *model)
{
    if (optimizer->kind->begin_step) optimizer->kind->begin_step(optimizer);
    size_t next = 0, n = optimizer->num_params < model->num_params ? optimizer->num_params
                                                                     : model->num_params;
    for (int i = 0; i < model->num_layers; i++) {
        const fedkd_layer *layer = &model->layers[i];
        if (layer->stats_count == 0) continue;
        size_t stats = layer->param_offset + layer->stats_offset;
        if (stats > next) optimizer->kind->step(optimizer, model->params, model->grads, next, stats);
        next = stats + layer->stats_count;
    }
    if (n > next) optimizer->kind->step(optimizer, model->params, model->grads, next, n);
}

void fedkd_optimizer_reset(fedkd_optimizer *optimizer)
{
    if (optimizer->state)
        memset(optimizer->state, 0, optimizer->state_floats * sizeof *optimizer->state);
}

float *fedkd_optimizer_state(fedkd_optimizer *optimizer, size_t *num_floats)
{
    if (num_floats) *num_floats = optimizer->state_floats;
    return optimizer->state;
}
