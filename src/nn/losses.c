/* Losses on logits (batch, classes). Each returns the batch mean and, when
 * d_logits is not NULL, writes the gradient of that mean. Sums over a row run
 * in double; the per-class work stays in float. Callers validate the
 * hyper-parameters (temperature > 0, 0 <= weight <= 1) once, not here. */
#include <math.h>

#include "fedkd/nn/nn.h"

static float row_max(const float *z, int classes)
{
    float max = z[0];
    for (int j = 1; j < classes; j++)
        if (z[j] > max) max = z[j];
    return max;
}

/* Row maximum and sum of exp((z - max) / temperature); the sum in double
 * because KD multiplies its log by T^2. */
static void row_softmax_terms(const float *z, int classes, float inv_temperature, float *max_out,
                              double *sum_out)
{
    float max = row_max(z, classes);
    double sum = 0.0;
    for (int j = 0; j < classes; j++) sum += (double)expf((z[j] - max) * inv_temperature);
    *max_out = max;
    *sum_out = sum;
}

void fedkd_softmax(const float *logits, float *probs, int batch, int classes, float temperature)
{
    float inv_temperature = 1.0f / temperature;
    for (int n = 0; n < batch; n++) {
        const float *z = logits + (size_t)n * (size_t)classes;
        float *p = probs + (size_t)n * (size_t)classes;
        float max;
        double sum;
        row_softmax_terms(z, classes, inv_temperature, &max, &sum);
        float inv_sum = (float)(1.0 / sum);
        for (int j = 0; j < classes; j++) p[j] = expf((z[j] - max) * inv_temperature) * inv_sum;
    }
}

/* -log softmax(z)_label of one row, and its gradient scaled by `scale` when
 * d_row is not NULL. Shared by CE and KD so that KD at weight 0 reproduces
 * CE bit for bit. */
static double row_cross_entropy(const float *z, int32_t label, int classes, float scale,
                                float *d_row)
{
    float max;
    double sum;
    if (!d_row) {
        row_softmax_terms(z, classes, 1.0f, &max, &sum);
        return log(sum) - (double)(z[label] - max);
    }
    /* row_softmax_terms at temperature 1 (z - max times 1.0f is z - max),
     * each exponential kept in d_row for the gradient rather than taken
     * twice: the same sum and the same probabilities. */
    max = row_max(z, classes);
    double shifted = (double)(z[label] - max); /* read before d_row is written */
    sum = 0.0;
    for (int j = 0; j < classes; j++) {
        d_row[j] = expf(z[j] - max);
        sum += (double)d_row[j];
    }
    float inv_sum = (float)(1.0 / sum);
    for (int j = 0; j < classes; j++) {
        float p = d_row[j] * inv_sum;
        d_row[j] = scale * (p - (j == label ? 1.0f : 0.0f));
    }
    return log(sum) - shifted;
}

float fedkd_loss_cross_entropy(const float *logits, const int32_t *labels, int batch,
                               int classes, float *d_logits)
{
    float inv_batch = 1.0f / (float)batch;
    double total = 0.0;
    for (int n = 0; n < batch; n++) {
        size_t row = (size_t)n * (size_t)classes;
        total += row_cross_entropy(logits + row, labels[n], classes, inv_batch,
                                   d_logits ? d_logits + row : NULL);
    }
    return (float)(total / (double)batch);
}

/* KL(teacher || softmax_T(z)) of one row, and, when d_row is not NULL, adds
 * scale * (softmax_T(z) - teacher) to it. Terms with teacher probability 0
 * contribute 0 (the limit of t log t). */
static double row_distillation(const float *z, const float *teacher, int classes,
                               float temperature, float scale, float *d_row)
{
    float inv_temperature = 1.0f / temperature;
    float max;
    double sum;
    row_softmax_terms(z, classes, inv_temperature, &max, &sum);
    double log_sum = log(sum);
    float inv_sum = (float)(1.0 / sum);
    double kl = 0.0;
    for (int j = 0; j < classes; j++) {
        float scaled = (z[j] - max) * inv_temperature;
        if (teacher[j] > 0.0f) {
            double log_q = (double)scaled - log_sum;
            kl += (double)teacher[j] * (log((double)teacher[j]) - log_q);
        }
        if (d_row) d_row[j] += scale * (expf(scaled) * inv_sum - teacher[j]);
    }
    return kl;
}

float fedkd_loss_kd(const float *logits, const float *teacher_probs, const int32_t *labels,
                    int batch, int classes, float temperature, float weight, float *d_logits)
{
    float inv_batch = 1.0f / (float)batch;
    float ce_scale = (1.0f - weight) * inv_batch;
    float kd_scale = weight * temperature * inv_batch;
    double ce_total = 0.0, kl_total = 0.0;
    for (int n = 0; n < batch; n++) {
        size_t row = (size_t)n * (size_t)classes;
        float *d_row = d_logits ? d_logits + row : NULL;
        if (weight < 1.0f) {
            ce_total += row_cross_entropy(logits + row, labels[n], classes, ce_scale, d_row);
        } else if (d_row) {
            for (int j = 0; j < classes; j++) d_row[j] = 0.0f;
        }
        if (weight > 0.0f)
            kl_total += row_distillation(logits + row, teacher_probs + row, classes, temperature,
                                         kd_scale, d_row);
    }
    double loss = 0.0;
    if (weight < 1.0f) loss += (double)(1.0f - weight) * (ce_total / (double)batch);
    if (weight > 0.0f)
        loss += (double)weight * (double)temperature * (double)temperature *
                (kl_total / (double)batch);
    return (float)loss;
}

float fedkd_loss_logit_mae(const float *logits, const float *target_logits, int batch,
                           int classes, float *d_logits)
{
    size_t count = (size_t)batch * (size_t)classes;
    float scale = 1.0f / (float)count;
    double total = 0.0;
    for (size_t i = 0; i < count; i++) {
        float diff = logits[i] - target_logits[i];
        total += fabs((double)diff);
        if (d_logits) d_logits[i] = diff > 0.0f ? scale : (diff < 0.0f ? -scale : 0.0f);
    }
    return (float)(total / (double)count);
}
