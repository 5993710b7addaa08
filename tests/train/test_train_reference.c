/* fedkd_train_local and fedkd_train_mutual (one peer) against the plain
 * loop written out here: gather the shuffled rows, forward, cross-entropy,
 * zero_grad, backward, the FedProx and SCAFFOLD terms, one optimizer step.
 * The training loops zero the gradients once and let each optimizer step
 * clear them, and prefetch rows ahead; the parameters and the optimizer
 * state must come out the same bits. The dataset's size leaves a partial
 * last batch, the model has a batchnorm (running statistics the step skips)
 * or not, and the models start with non-zero gradients. fedkd_train_local
 * from start_params (read in place by SGD's first step after a reset when
 * the model has no running statistics, copied otherwise) gives the same
 * bits and leaves the start as it was, also when no step runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/rng.h"
#include "fedkd/nn/nn.h"
#include "fedkd/train/train.h"
#include "test_layer.h"
#include "test_util.h"

enum { SAMPLES = 203, FEATURES = 9, CLASSES = 3, BATCH = 16, EPOCHS = 2 };

/* The loop as fedkd_train_local ran it before the clearing step. */
static void train_reference(fedkd_model *model, fedkd_optimizer *optimizer,
                            const fedkd_dataset *data, const fedkd_train_settings *s)
{
    uint32_t order[SAMPLES];
    float batch_x[BATCH * FEATURES], d_logits[BATCH * CLASSES];
    int32_t batch_y[BATCH];
    model->training = 1;
    for (int epoch = 0; epoch < s->epochs; epoch++) {
        for (uint32_t i = 0; i < SAMPLES; i++) order[i] = i;
        fedkd_rng rng = fedkd_rng_stream(s->seed, FEDKD_RNG_LOCAL_SHUFFLE, s->stream_a,
                                         s->stream_b + (uint64_t)epoch);
        fedkd_rng_shuffle_u32(&rng, order, SAMPLES);
        for (int first = 0; first < SAMPLES; first += BATCH) {
            int count = SAMPLES - first < BATCH ? SAMPLES - first : BATCH;
            for (int i = 0; i < count; i++) {
                memcpy(batch_x + i * FEATURES, data->features + order[first + i] * FEATURES,
                       FEATURES * sizeof(float));
                batch_y[i] = data->labels[order[first + i]];
            }
            const float *logits = fedkd_model_forward(model, batch_x, count);
            fedkd_loss_cross_entropy(logits, batch_y, count, CLASSES, d_logits);
            fedkd_model_zero_grad(model);
            fedkd_model_backward(model, d_logits, count);
            if (s->prox_center && s->prox_mu > 0.0f)
                for (size_t p = 0; p < model->num_params; p++)
                    model->grads[p] += s->prox_mu * (model->params[p] - s->prox_center[p]);
            if (s->grad_offset)
                for (size_t p = 0; p < model->num_params; p++)
                    model->grads[p] += s->grad_offset[p];
            fedkd_optimizer_step_model(optimizer, model);
        }
    }
    model->training = 0;
}

/* The model's parameters and the optimizer's state are the reference's. */
static int same_as_reference(const fedkd_model *reference, const float *reference_state,
                             size_t floats, const fedkd_model *model,
                             fedkd_optimizer *optimizer)
{
    return memcmp(reference->params, model->params, model->num_params * sizeof(float)) == 0 &&
           memcmp(reference_state, fedkd_optimizer_state(optimizer, NULL),
                  floats * sizeof(float)) == 0;
}

/* Every case on one model, with a batchnorm or without. */
static void check_model(const fedkd_dataset *data, int with_norm, fedkd_rng *rng)
{
    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "odd");
    spec.input = (fedkd_shape){FEATURES, 1, 1};
    spec.num_classes = CLASSES;
    /* Over 4096 parameters: the optimizer's hooked ranges come in chunks. */
    spec.layers[spec.num_layers++] = test_layer("dense", 240);
    if (with_norm) spec.layers[spec.num_layers++] = test_layer("batchnorm", 0);
    spec.layers[spec.num_layers++] = test_layer("relu", 0);
    spec.layers[spec.num_layers++] = test_layer("dense", CLASSES);

    const struct {
        const char *optimizer;
        float momentum, decay, prox_mu;
        int nesterov, offset;
    } cases[] = {
        {"sgd", 0.9f, 0.0f, 0.0f, 0, 0},   {"sgd", 0.9f, 0.0f, 0.1f, 0, 0},
        {"sgd", 0.9f, 0.0f, 0.0f, 0, 1},   {"sgd", 0.9f, 1e-3f, 0.1f, 1, 1},
        {"adam", 0.0f, 1e-3f, 0.0f, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* 0: the reference loop, 1: fedkd_train_local, 2: fedkd_train_mutual,
         * 3: fedkd_train_local from start_params */
        fedkd_model *models[4] = {NULL, NULL, NULL, NULL};
        fedkd_optimizer *optimizers[4] = {NULL, NULL, NULL, NULL};
        float *center = NULL, *offset = NULL, *start = NULL, *kept = NULL;
        fedkd_optimizer_settings os = fedkd_optimizer_default_settings();
        snprintf(os.name, sizeof os.name, "%s", cases[c].optimizer);
        os.lr = 0.05f;
        os.momentum = cases[c].momentum;
        os.nesterov = cases[c].nesterov;
        os.weight_decay = cases[c].decay;
        int ok = 1;
        for (int m = 0; m < 4; m++) {
            ok = ok && fedkd_model_create(&models[m], &spec, BATCH) == FEDKD_OK;
            if (!ok) break;
            fedkd_model_init_params(models[m], 3, 0);
            ok = fedkd_optimizer_create(&optimizers[m], &os, models[m]->num_params) == FEDKD_OK;
            /* Left over from whatever ran before: the loops must not add to it. */
            for (size_t p = 0; ok && p < models[m]->num_params; p++) models[m]->grads[p] = 0.5f;
        }
        CHECK(ok, "case %zu: create: %s", c, fedkd_error_message());
        if (!ok) goto next;
        size_t n = models[0]->num_params;
        center = malloc(n * sizeof *center);
        offset = malloc(n * sizeof *offset);
        start = malloc(n * sizeof *start);
        kept = malloc(n * sizeof *kept);
        if (!center || !offset || !start || !kept) {
            CHECK(0, "out of memory");
            goto next;
        }
        for (size_t p = 0; p < n; p++) {
            center[p] = models[0]->params[p] + (float)(0.2 * fedkd_rng_uniform(rng) - 0.1);
            offset[p] = (float)(0.02 * fedkd_rng_uniform(rng) - 0.01);
        }
        fedkd_train_settings s = fedkd_train_default_settings();
        s.epochs = EPOCHS;
        s.batch_size = BATCH;
        s.seed = 9;
        s.stream_a = 4;
        s.stream_b = 2;
        if (cases[c].prox_mu > 0.0f) {
            s.prox_center = center;
            s.prox_mu = cases[c].prox_mu;
        }
        if (cases[c].offset) s.grad_offset = offset;

        train_reference(models[0], optimizers[0], data, &s);
        fedkd_train_stats stats;
        CHECK(fedkd_train_local(models[1], optimizers[1], data, &s, &stats) == FEDKD_OK,
              "case %zu: fedkd_train_local: %s", c, fedkd_error_message());
        CHECK(stats.steps == EPOCHS * ((SAMPLES + BATCH - 1) / BATCH),
              "case %zu: %ld steps", c, stats.steps);
        size_t floats = 0;
        const float *reference_state = fedkd_optimizer_state(optimizers[0], &floats);
        CHECK(same_as_reference(models[0], reference_state, floats, models[1], optimizers[1]),
              "case %zu (%s momentum %g decay %g nesterov %d prox %g offset %d): "
              "fedkd_train_local gives the reference loop's parameters and state",
              c, cases[c].optimizer, (double)cases[c].momentum, (double)cases[c].decay,
              cases[c].nesterov, (double)cases[c].prox_mu, cases[c].offset);
        /* Mutual learning has no FedProx or SCAFFOLD terms. */
        if (!s.prox_center && !s.grad_offset) {
            long steps = 0;
            CHECK(fedkd_train_mutual(&models[2], &optimizers[2], 1, data, &s, &steps) ==
                      FEDKD_OK,
                  "case %zu: fedkd_train_mutual: %s", c, fedkd_error_message());
            CHECK(same_as_reference(models[0], reference_state, floats, models[2], optimizers[2]),
                  "case %zu (%s): fedkd_train_mutual with one peer gives the reference "
                  "loop's parameters and state",
                  c, cases[c].optimizer);
        }
        /* From a start elsewhere, the model's own buffer holding NaN (it
         * must not be read), the optimizer reset as a round's client's is. */
        memcpy(start, models[3]->params, n * sizeof *start);
        memcpy(kept, start, n * sizeof *kept);
        for (size_t p = 0; p < n; p++) models[3]->params[p] = NAN;
        fedkd_optimizer_reset(optimizers[3]);
        CHECK(fedkd_optimizer_can_step_into(optimizers[3]) ==
                  (strcmp(cases[c].optimizer, "sgd") == 0),
              "case %zu: a reset %s can step out of place: %d", c, cases[c].optimizer,
              fedkd_optimizer_can_step_into(optimizers[3]));
        s.start_params = start;
        CHECK(fedkd_train_local(models[3], optimizers[3], data, &s, &stats) == FEDKD_OK,
              "case %zu: fedkd_train_local from start_params: %s", c, fedkd_error_message());
        CHECK(same_as_reference(models[0], reference_state, floats, models[3], optimizers[3]),
              "case %zu (%s, batchnorm %d): fedkd_train_local from start_params gives the "
              "reference loop's parameters and state",
              c, cases[c].optimizer, with_norm);
        CHECK(memcmp(start, kept, n * sizeof *start) == 0, "case %zu: the start was written", c);
        /* The next hosted client skips zeroing the gradients: they are. */
        int all_zero = models[3]->grads_zero;
        for (size_t p = 0; p < n; p++) all_zero = all_zero && models[3]->grads[p] == 0.0f;
        CHECK(all_zero, "case %zu: after training the gradients are not marked and all zero", c);
        /* No step (every batch dropped): the model holds the start. */
        fedkd_dataset few = *data;
        few.count = BATCH - 1;
        s.drop_last = 1;
        for (size_t p = 0; p < n; p++) models[3]->params[p] = NAN;
        fedkd_optimizer_reset(optimizers[3]);
        CHECK(fedkd_train_local(models[3], optimizers[3], &few, &s, &stats) == FEDKD_OK &&
                  stats.steps == 0,
              "case %zu: no step: %s, %ld steps", c, fedkd_error_message(), stats.steps);
        CHECK(memcmp(models[3]->params, start, n * sizeof *start) == 0,
              "case %zu: after no step the model does not hold the start", c);
    next:
        for (int m = 0; m < 4; m++) {
            fedkd_model_destroy(&models[m]);
            fedkd_optimizer_destroy(&optimizers[m]);
        }
        free(center);
        free(offset);
        free(start);
        free(kept);
    }
}

int main(void)
{
    static float features[SAMPLES * FEATURES];
    static int32_t labels[SAMPLES];
    fedkd_rng rng = fedkd_rng_stream(5, FEDKD_RNG_TEST, 0, 0);
    for (int i = 0; i < SAMPLES * FEATURES; i++)
        features[i] = (float)(2.0 * fedkd_rng_uniform(&rng) - 1.0);
    for (int i = 0; i < SAMPLES; i++) labels[i] = (int32_t)(fedkd_rng_uniform(&rng) * CLASSES);
    fedkd_dataset data = {.count = SAMPLES, .shape = {FEATURES, 1, 1},
                          .num_classes = CLASSES, .features = features, .labels = labels};
    snprintf(data.origin, sizeof data.origin, "synthetic rows");
    check_model(&data, 1, &rng);
    check_model(&data, 0, &rng);
    return test_finish("test_train_reference");
}
