/* Deep mutual learning within one process: K peers see the same minibatches
 * (the order of fedkd_train_local for the same stream keys); each peer i
 * steps on CE(y, p_i) + 1/(K-1) sum_{j != i} KL(p_j || p_i), whose gradient
 * with respect to its logits is (p_i - y) + 1/(K-1) sum_{j != i} (p_i - p_j),
 * with every p_j taken before any peer steps. The KL terms need the peers'
 * current predictions at every step, so this loop cannot be a frozen
 * teacher hook on fedkd_train_local; with K = 1 it performs exactly that
 * loop's plain-training operations. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/train/train.h"

fedkd_status fedkd_train_mutual(fedkd_model *const *models, fedkd_optimizer *const *optimizers,
                                   int num_models, const fedkd_dataset *data,
                                   const fedkd_train_settings *train, long *steps)
{
    if (num_models < 1)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "mutual learning: needs at least one model");
    int classes = fedkd_model_num_classes(models[0]);
    size_t sample = fedkd_dataset_sample_floats(data);
    int batch_size = train->batch_size;
    for (int i = 0; i < num_models; i++) {
        if (fedkd_model_num_classes(models[i]) != classes)
            return FEDKD_FAIL(FEDKD_ERR_INVALID,
                              "mutual learning on %s: peer %d has %d classes, peer 0 has %d",
                              data->origin, i, fedkd_model_num_classes(models[i]), classes);
        if (fedkd_shape_size(models[i]->spec.input) != sample)
            return FEDKD_FAIL(FEDKD_ERR_INVALID,
                              "mutual learning: samples of %s have %zu features, peer %d expects "
                              "%zu",
                              data->origin, sample, i, fedkd_shape_size(models[i]->spec.input));
        if (models[i]->max_batch < batch_size) batch_size = models[i]->max_batch;
    }
    size_t batch_floats = (size_t)batch_size * (size_t)classes;
    fedkd_status status = FEDKD_OK;
    uint32_t *order = malloc((data->count ? data->count : 1) * sizeof *order);
    float *batch_x = fedkd_alloc((size_t)batch_size * sample * sizeof(float));
    int32_t *batch_y = malloc((size_t)batch_size * sizeof *batch_y);
    float *d_logits = fedkd_alloc(batch_floats * sizeof(float));
    float *probs = fedkd_alloc((size_t)num_models * batch_floats * sizeof(float));
    const float **logits = malloc((size_t)num_models * sizeof *logits);
    if (!order || !batch_x || !batch_y || !d_logits || !probs || !logits) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "mutual learning: out of memory for %zu samples",
                            data->count);
        goto done;
    }
    float kl_scale = num_models > 1 ? 1.0f / (float)(num_models - 1) : 0.0f;
    int min_batch = 1;
    for (int i = 0; i < num_models; i++) {
        int needed = fedkd_model_spec_min_train_batch(&models[i]->spec);
        if (needed > min_batch) min_batch = needed;
    }
    if (batch_size < min_batch) {
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `local.batch_size`: a peer has a batchnorm layer, which "
                            "needs training batches of at least %d samples, got %d",
                            min_batch, batch_size);
        goto done;
    }
    /* Each step clears the gradients it has used (one pass with the
     * optimizer's), so they need zeroing only once, here. */
    for (int i = 0; i < num_models; i++) {
        models[i]->training = 1;
        fedkd_model_zero_grad(models[i]);
    }

    for (int epoch = 0; epoch < train->epochs; epoch++) {
        for (size_t i = 0; i < data->count; i++) order[i] = (uint32_t)i;
        fedkd_rng rng = fedkd_rng_stream(train->seed, FEDKD_RNG_LOCAL_SHUFFLE, train->stream_a,
                                         train->stream_b + (uint64_t)epoch);
        fedkd_rng_shuffle_u32(&rng, order, data->count);
        long step = 0;
        for (size_t first = 0; first < data->count; first += (size_t)batch_size) {
            size_t left = data->count - first;
            int count = left < (size_t)batch_size ? (int)left : batch_size;
            if ((train->drop_last && count < batch_size) || count < min_batch) break;
            fedkd_gather_batch(data, order, first, count, batch_x, batch_y);
            /* The next batch's rows start loading while this one trains. */
            fedkd_prefetch_batch(data, order, first + (size_t)count, batch_size);
            /* Every peer's prediction first: they are constants below. Each
             * model keeps its own activations for its backward pass. */
            for (int i = 0; i < num_models; i++) {
                logits[i] = fedkd_model_forward(models[i], batch_x, count);
                if (num_models > 1)
                    fedkd_softmax(logits[i], probs + (size_t)i * batch_floats, count, classes,
                                  1.0f);
            }
            for (int i = 0; i < num_models; i++) {
                float loss = fedkd_loss_cross_entropy(logits[i], batch_y, count, classes, d_logits);
                if (!isfinite(loss)) {
                    status = FEDKD_FAIL(FEDKD_ERR_NUMERIC,
                                        "mutual learning on %s: peer %d's loss became %g at "
                                        "epoch %d step %ld; lower local.lr",
                                        data->origin, i, (double)loss, epoch + 1, step + 1);
                    goto done;
                }
                if (num_models > 1) {
                    float scale = kl_scale / (float)count;
                    const float *own = probs + (size_t)i * batch_floats;
                    for (int j = 0; j < num_models; j++) {
                        if (j == i) continue;
                        const float *other = probs + (size_t)j * batch_floats;
                        for (size_t e = 0; e < (size_t)count * (size_t)classes; e++)
                            d_logits[e] += scale * (own[e] - other[e]);
                    }
                }
                fedkd_optimizer_backward_step(optimizers[i], models[i], d_logits, count, NULL,
                                              NULL);
            }
            step++;
            if (steps) (*steps)++;
        }
    }
done:
    for (int i = 0; i < num_models; i++) models[i]->training = 0;
    free(order);
    fedkd_free(batch_x);
    free(batch_y);
    fedkd_free(d_logits);
    fedkd_free(probs);
    free(logits);
    return status;
}
