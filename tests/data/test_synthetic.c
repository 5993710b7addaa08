/* Synthetic Gaussian blobs: determinism, shared class means across streams,
 * balanced labels and the noise model. */
#include <stdlib.h>
#include <string.h>

#include "../test_util.h"
#include "fedkd/data/data.h"

static fedkd_dataset *generate(const fedkd_synthetic_settings *settings)
{
    fedkd_dataset *d = NULL;
    CHECK(fedkd_synthetic_generate(&d, settings) == FEDKD_OK, "generate: %s",
          fedkd_error_message());
    return d;
}

/* Per-class feature means of `d`: (classes, features). */
static double *class_means(const fedkd_dataset *d)
{
    size_t features = fedkd_dataset_sample_floats(d);
    double *means = calloc((size_t)d->num_classes * features, sizeof *means);
    size_t *counts = calloc((size_t)d->num_classes, sizeof *counts);
    for (size_t i = 0; i < d->count; i++) {
        counts[d->labels[i]]++;
        for (size_t j = 0; j < features; j++)
            means[(size_t)d->labels[i] * features + j] += (double)d->features[i * features + j];
    }
    for (int c = 0; c < d->num_classes; c++)
        for (size_t j = 0; j < features; j++) means[(size_t)c * features + j] /= (double)counts[c];
    free(counts);
    return means;
}

/* Accuracy on `d` of the classifier "nearest of `means`". */
static double nearest_mean_accuracy(const double *means, const fedkd_dataset *d)
{
    size_t features = fedkd_dataset_sample_floats(d), correct = 0;
    for (size_t i = 0; i < d->count; i++) {
        int best = -1;
        double best_distance = 0.0;
        for (int c = 0; c < d->num_classes; c++) {
            double distance = 0.0;
            for (size_t j = 0; j < features; j++) {
                double diff = (double)d->features[i * features + j] - means[(size_t)c * features + j];
                distance += diff * diff;
            }
            if (best < 0 || distance < best_distance) {
                best = c;
                best_distance = distance;
            }
        }
        if (best == d->labels[i]) correct++;
    }
    return (double)correct / (double)d->count;
}

static void test_defaults(void)
{
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    CHECK(s.count == 1000 && s.shape.channels == 20 && s.shape.height == 1 && s.shape.width == 1 &&
              s.num_classes == 4 && s.separation == 1.5f && s.seed == 1 && s.stream == 0,
          "default settings");
}

static void test_determinism_and_streams(void)
{
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    fedkd_dataset *a = generate(&s), *b = generate(&s);
    s.stream = 1;
    fedkd_dataset *other_stream = generate(&s);
    s.stream = 0;
    s.seed = 2;
    fedkd_dataset *other_seed = generate(&s);
    if (!a || !b || !other_stream || !other_seed) goto done;

    size_t bytes = a->count * fedkd_dataset_sample_floats(a) * sizeof(float);
    CHECK(memcmp(a->features, b->features, bytes) == 0, "same settings, same features");
    CHECK(memcmp(a->labels, b->labels, a->count * sizeof(int32_t)) == 0, "same labels");
    CHECK(memcmp(a->features, other_stream->features, bytes) != 0, "another stream differs");
    CHECK(memcmp(a->features, other_seed->features, bytes) != 0, "another seed differs");

    /* Stream 1 is a fresh draw of the same task: means fit on stream 0
     * classify it well. */
    double *means = class_means(a);
    double same_task = nearest_mean_accuracy(means, other_stream);
    CHECK(same_task > 0.8, "nearest-mean accuracy on stream 1: %g", same_task);
    free(means);

    /* Noise is N(0, 1) around the class mean; class means spread with
     * variance separation^2. 1000 x 20 values: the within-class variance is
     * known to about 1%; the 80 mean coordinates to about 30%. */
    size_t features = fedkd_dataset_sample_floats(a);
    means = class_means(a);
    double within = 0.0, between = 0.0;
    for (size_t i = 0; i < a->count; i++)
        for (size_t j = 0; j < features; j++) {
            double diff = (double)a->features[i * features + j] -
                          means[(size_t)a->labels[i] * features + j];
            within += diff * diff;
        }
    within /= (double)(a->count * features);
    for (size_t k = 0; k < (size_t)a->num_classes * features; k++) between += means[k] * means[k];
    between /= (double)((size_t)a->num_classes * features);
    CHECK_CLOSE(within, 1.0, 0.05, "within-class variance");
    CHECK(between > 0.6 * 2.25 && between < 1.5 * 2.25, "spread of class means %g, expected ~2.25",
          between);
    free(means);

done:
    fedkd_dataset_destroy(&a);
    fedkd_dataset_destroy(&b);
    fedkd_dataset_destroy(&other_stream);
    fedkd_dataset_destroy(&other_seed);
}

static void test_separation_matters(void)
{
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    s.separation = 0.0f;
    fedkd_dataset *train = generate(&s);
    s.stream = 1;
    fedkd_dataset *test = generate(&s);
    if (train && test) {
        double *means = class_means(train);
        double accuracy = nearest_mean_accuracy(means, test);
        CHECK(accuracy < 0.4, "with separation 0 the classes overlap, accuracy %g", accuracy);
        free(means);
    }
    fedkd_dataset_destroy(&train);
    fedkd_dataset_destroy(&test);
}

static void test_balance_and_shape(void)
{
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    s.count = 10;
    s.num_classes = 4;
    s.shape = (fedkd_shape){2, 3, 3};
    fedkd_dataset *d = generate(&s);
    if (d) {
        CHECK(d->count == 10 && d->num_classes == 4, "count and classes");
        CHECK(d->shape.channels == 2 && d->shape.height == 3 && d->shape.width == 3, "shape");
        int histogram[4] = {0};
        for (size_t i = 0; i < d->count; i++) {
            CHECK(d->labels[i] == (int32_t)(i % 4), "label %zu is %d", i, (int)d->labels[i]);
            if (d->labels[i] >= 0 && d->labels[i] < 4) histogram[d->labels[i]]++;
        }
        CHECK(histogram[0] == 3 && histogram[1] == 3 && histogram[2] == 2 && histogram[3] == 2,
              "histogram %d %d %d %d", histogram[0], histogram[1], histogram[2], histogram[3]);
    }
    fedkd_dataset_destroy(&d);

    s = fedkd_synthetic_default_settings();
    d = generate(&s);
    if (d) {
        int histogram[4] = {0};
        for (size_t i = 0; i < d->count; i++) histogram[d->labels[i] & 3]++;
        CHECK(histogram[0] == 250 && histogram[1] == 250 && histogram[2] == 250 &&
                  histogram[3] == 250,
              "1000 samples, 4 classes: 250 each");
        /* Normalisation is exact arithmetic on every feature. */
        float first = d->features[0];
        fedkd_dataset_normalize(d, 0.5f, 2.0f);
        CHECK(d->features[0] == (first - 0.5f) / 2.0f, "normalize");
    }
    fedkd_dataset_destroy(&d);
}

static void test_invalid_settings(void)
{
    fedkd_dataset *d = NULL;
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    s.count = 0;
    CHECK(fedkd_synthetic_generate(&d, &s) == FEDKD_ERR_INVALID && !d, "count 0");
    s = fedkd_synthetic_default_settings();
    s.num_classes = 0;
    CHECK(fedkd_synthetic_generate(&d, &s) == FEDKD_ERR_INVALID && !d, "no classes");
    s = fedkd_synthetic_default_settings();
    s.shape.height = 0;
    CHECK(fedkd_synthetic_generate(&d, &s) == FEDKD_ERR_INVALID && !d, "empty shape");
    s = fedkd_synthetic_default_settings();
    s.separation = -1.0f;
    CHECK(fedkd_synthetic_generate(&d, &s) == FEDKD_ERR_INVALID && !d, "negative separation");
}

int main(void)
{
    test_defaults();
    test_determinism_and_streams();
    test_separation_matters();
    test_balance_and_shape();
    test_invalid_settings();
    return test_finish("test_synthetic");
}
