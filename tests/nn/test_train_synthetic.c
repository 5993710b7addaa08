/* End-to-end: a small dense model learns separable Gaussian blobs with
 * minibatch SGD and cross-entropy. The blobs are built here (4 classes in 20
 * features, class c centred at +2 on features 5c..5c+4, unit noise), so the
 * Bayes accuracy is above 99%: asserting training accuracy > 0.9 and a final
 * loss below half the initial one leaves a wide margin while still failing
 * on a broken forward, backward, loss or optimizer. Fully seeded. */
#include <stdlib.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "fedkd/core/rng.h"
#include "test_layer.h"
#include "test_util.h"

enum { features = 20, classes = 4, samples = 512, batch_size = 32, epochs = 8 };

/* Mean loss and accuracy over the whole set, in batches. */
static void evaluate(fedkd_model *model, const float *x, const int32_t *y, double *loss,
                     double *accuracy)
{
    double total = 0.0;
    int correct = 0;
    for (int start = 0; start < samples; start += batch_size) {
        int n = samples - start < batch_size ? samples - start : batch_size;
        const float *logits = fedkd_model_forward(model, x + (size_t)start * features, n);
        total += (double)fedkd_loss_cross_entropy(logits, y + start, n, classes, NULL) * n;
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int j = 1; j < classes; j++)
                if (logits[i * classes + j] > logits[i * classes + best]) best = j;
            correct += best == y[start + i];
        }
    }
    *loss = total / samples;
    *accuracy = (double)correct / samples;
}

int main(void)
{
    fedkd_rng data_rng = fedkd_rng_stream(5, FEDKD_RNG_TEST, 1, 0);
    float *x = malloc((size_t)samples * features * sizeof *x);
    int32_t *y = malloc(samples * sizeof *y);
    for (int i = 0; i < samples; i++) {
        y[i] = i % classes;
        for (int f = 0; f < features; f++) {
            double centre = f / 5 == y[i] ? 2.0 : 0.0;
            x[i * features + f] = (float)(centre + fedkd_rng_normal(&data_rng));
        }
    }

    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "blobs");
    spec.input = (fedkd_shape){features, 1, 1};
    spec.num_classes = classes;
    spec.layers[spec.num_layers++] = test_layer("dense", 32);
    spec.layers[spec.num_layers++] = test_layer("relu", 0);
    spec.layers[spec.num_layers++] = test_layer("dense", classes);

    fedkd_model *model = NULL;
    fedkd_optimizer *optimizer = NULL;
    CHECK(fedkd_model_create(&model, &spec, batch_size) == FEDKD_OK, "create: %s",
          fedkd_error_message());
    fedkd_optimizer_settings settings = fedkd_optimizer_default_settings();
    settings.lr = 0.05f;
    settings.momentum = 0.9f;
    CHECK(fedkd_optimizer_create(&optimizer, &settings, model ? model->num_params : 0) ==
              FEDKD_OK,
          "optimizer: %s", fedkd_error_message());
    if (!model || !optimizer) return test_finish("test_train_synthetic");
    fedkd_model_init_params(model, 11, 0);

    double initial_loss, initial_accuracy, loss, accuracy;
    evaluate(model, x, y, &initial_loss, &initial_accuracy);

    uint32_t order[samples];
    float batch_x[batch_size * features], d_logits[batch_size * classes];
    int32_t batch_y[batch_size];
    for (int epoch = 0; epoch < epochs; epoch++) {
        fedkd_rng shuffle = fedkd_rng_stream(5, FEDKD_RNG_TEST, 2, (uint64_t)epoch);
        for (int i = 0; i < samples; i++) order[i] = (uint32_t)i;
        fedkd_rng_shuffle_u32(&shuffle, order, samples);
        for (int start = 0; start < samples; start += batch_size) {
            int n = samples - start < batch_size ? samples - start : batch_size;
            for (int i = 0; i < n; i++) {
                memcpy(batch_x + i * features, x + (size_t)order[start + i] * features,
                       features * sizeof *x);
                batch_y[i] = y[order[start + i]];
            }
            const float *logits = fedkd_model_forward(model, batch_x, n);
            fedkd_loss_cross_entropy(logits, batch_y, n, classes, d_logits);
            fedkd_model_zero_grad(model);
            fedkd_model_backward(model, d_logits, n);
            fedkd_optimizer_step(optimizer, model->params, model->grads);
        }
    }
    evaluate(model, x, y, &loss, &accuracy);
    printf("loss %.4f -> %.4f, accuracy %.3f -> %.3f\n", initial_loss, loss, initial_accuracy,
           accuracy);
    CHECK(loss < 0.5 * initial_loss, "final loss %g not below half the initial %g", loss,
          initial_loss);
    CHECK(accuracy > 0.9, "training accuracy %g, expected > 0.9", accuracy);

    fedkd_optimizer_destroy(&optimizer);
    fedkd_model_destroy(&model);
    free(x);
    free(y);
    return test_finish("test_train_synthetic");
}
