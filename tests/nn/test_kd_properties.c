/* Properties of the KD loss that follow from its definition
 *   (1 - w) CE(y, softmax(z)) + w T^2 KL(teacher || softmax_T(z)):
 * - with the teacher equal to softmax_T(z) and w = 1, loss and gradient are 0
 *   (|loss| <= 1e-5, |gradient| <= 1e-6);
 * - with w = 1 the loss is T^2 times the KL divergence, computed here in
 *   double from the definition (relative 1e-4);
 * - with w = 0 it is cross-entropy, bit for bit (loss and gradient);
 * - each gradient row sums to 0 (|sum| <= 1e-6), as softmax gradients do;
 * - and a few values worked out by hand. */
#include <stdlib.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "fedkd/core/rng.h"
#include "test_util.h"

enum { batch = 4, classes = 6, count = batch * classes };

static double reference_kl_times_t2(const float *logits, const float *teacher, float temperature)
{
    double total = 0.0;
    double t = (double)temperature;
    for (int n = 0; n < batch; n++) {
        const float *z = logits + n * classes;
        double max = (double)z[0];
        for (int j = 1; j < classes; j++) max = fmax(max, (double)z[j]);
        double sum = 0.0;
        for (int j = 0; j < classes; j++) sum += exp(((double)z[j] - max) / t);
        for (int j = 0; j < classes; j++) {
            double q = exp(((double)z[j] - max) / t) / sum;
            double p = (double)teacher[n * classes + j];
            if (p > 0.0) total += p * log(p / q);
        }
    }
    return t * t * total / batch;
}

int main(void)
{
    fedkd_rng rng = fedkd_rng_stream(4, FEDKD_RNG_TEST, 0, 0);
    float logits[count], teacher_logits[count], teacher[count], grad[count], grad_ce[count];
    int32_t labels[batch] = {1, 0, 5, 2};
    for (int i = 0; i < count; i++) {
        logits[i] = (float)(4.0 * fedkd_rng_uniform(&rng) - 2.0);
        teacher_logits[i] = (float)(6.0 * fedkd_rng_uniform(&rng) - 3.0);
    }
    const float temperatures[] = {1.0f, 2.0f, 4.0f, 8.0f, 0.5f};

    for (int t = 0; t < 5; t++) {
        float temperature = temperatures[t];

        /* Teacher == student at T, w = 1: nothing to learn. */
        fedkd_softmax(logits, teacher, batch, classes, temperature);
        float loss = fedkd_loss_kd(logits, teacher, NULL, batch, classes, temperature, 1.0f, grad);
        CHECK(fabs((double)loss) <= 1e-5, "T=%g: self-distillation loss %g, expected 0",
              (double)temperature, (double)loss);
        double worst = 0.0;
        for (int i = 0; i < count; i++) worst = fmax(worst, fabs((double)grad[i]));
        CHECK(worst <= 1e-6, "T=%g: self-distillation gradient up to %g, expected 0",
              (double)temperature, worst);

        /* w = 1: T^2 KL from the definition. */
        fedkd_softmax(teacher_logits, teacher, batch, classes, temperature);
        loss = fedkd_loss_kd(logits, teacher, NULL, batch, classes, temperature, 1.0f, grad);
        double expected = reference_kl_times_t2(logits, teacher, temperature);
        CHECK(fabs((double)loss - expected) <= 1e-4 * fabs(expected) && expected > 0.0,
              "T=%g: KD loss %g, expected T^2 KL = %g", (double)temperature, (double)loss,
              expected);
        /* The KD gradient w.r.t. z is T (q_T - teacher) / batch. */
        float q[count];
        fedkd_softmax(logits, q, batch, classes, temperature);
        for (int i = 0; i < count; i++)
            CHECK_CLOSE(grad[i], temperature * (q[i] - teacher[i]) / batch, 1e-6,
                        "KD gradient at w = 1");

        /* w = 0: cross-entropy exactly. */
        float loss_kd = fedkd_loss_kd(logits, teacher, labels, batch, classes, temperature, 0.0f,
                                      grad);
        float loss_ce = fedkd_loss_cross_entropy(logits, labels, batch, classes, grad_ce);
        CHECK(loss_kd == loss_ce, "T=%g: KD at w = 0 gives %.9g, CE %.9g", (double)temperature,
              (double)loss_kd, (double)loss_ce);
        CHECK(memcmp(grad, grad_ce, sizeof grad) == 0,
              "T=%g: KD gradient at w = 0 differs from CE's", (double)temperature);

        /* Rows of the mixed gradient sum to 0; the loss mixes linearly. */
        loss = fedkd_loss_kd(logits, teacher, labels, batch, classes, temperature, 0.3f, grad);
        CHECK_CLOSE(loss, 0.7 * (double)loss_ce + 0.3 * expected, 1e-5, "loss at w = 0.3");
        for (int n = 0; n < batch; n++) {
            double row = 0.0;
            for (int j = 0; j < classes; j++) row += (double)grad[n * classes + j];
            CHECK(fabs(row) <= 1e-6, "T=%g: gradient row %d sums to %g", (double)temperature, n,
                  row);
        }
    }

    /* By hand: two equal logits, label 0: CE = ln 2, gradient (0.5 - 1, 0.5) / 1. */
    const float even[2] = {0.3f, 0.3f};
    const int32_t label0[1] = {0};
    float g2[2];
    float ce = fedkd_loss_cross_entropy(even, label0, 1, 2, g2);
    CHECK_CLOSE(ce, log(2.0), 1e-6, "CE of equal logits");
    CHECK_CLOSE(g2[0], -0.5, 1e-6, "CE gradient of the label");
    CHECK_CLOSE(g2[1], 0.5, 1e-6, "CE gradient of the other class");

    /* By hand: z = (0, 2 ln 3), T = 2 -> softmax_T(z) = (1/4, 3/4); teacher
     * (1/2, 1/2), w = 1: 4 * (0.5 ln 2 + 0.5 ln(2/3)) = 2 ln(4/3). */
    const float z[2] = {0.0f, (float)(2.0 * log(3.0))};
    const float half[2] = {0.5f, 0.5f};
    float kd = fedkd_loss_kd(z, half, NULL, 1, 2, 2.0f, 1.0f, g2);
    CHECK_CLOSE(kd, 2.0 * log(4.0 / 3.0), 1e-6, "KD by hand");
    CHECK_CLOSE(g2[0], 2.0 * (0.25 - 0.5), 1e-6, "KD gradient by hand");
    CHECK_CLOSE(g2[1], 2.0 * (0.75 - 0.5), 1e-6, "KD gradient by hand");

    /* Softmax with temperature, stable for huge logits. */
    const float huge[3] = {1000.0f, 1000.0f, -1000.0f};
    float p[3];
    fedkd_softmax(huge, p, 1, 3, 1.0f);
    CHECK_CLOSE(p[0], 0.5, 1e-6, "softmax of huge logits");
    CHECK(p[2] == 0.0f && !isnan(p[0]), "softmax of huge logits is finite");
    fedkd_softmax(z, p, 1, 2, 2.0f);
    CHECK_CLOSE(p[0], 0.25, 1e-6, "softmax at T = 2");

    /* MAE by hand: |1 - 0| and |-1 - 1| over 2 values = 1.5; gradient sign / 2. */
    const float a[2] = {1.0f, -1.0f}, b[2] = {0.0f, 1.0f};
    float mae = fedkd_loss_logit_mae(a, b, 1, 2, g2);
    CHECK_CLOSE(mae, 1.5, 1e-6, "MAE by hand");
    CHECK(g2[0] == 0.5f && g2[1] == -0.5f, "MAE gradient %g %g", (double)g2[0], (double)g2[1]);
    return test_finish("test_kd_properties");
}
