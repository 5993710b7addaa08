/* Gaussian blobs: a task whose difficulty is one number (the separation of
 * the class means relative to unit noise), for tests and quick runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/dataset_internal.h"
#include "fedkd/core/rng.h"

/* Far beyond any use; larger values mean a config mistake. */
#define SYNTHETIC_MAX_CLASSES 100000

fedkd_synthetic_settings fedkd_synthetic_default_settings(void)
{
    fedkd_synthetic_settings settings = {
        .count = 1000,
        .shape = {.channels = 20, .height = 1, .width = 1},
        .num_classes = 4,
        .separation = 1.5f,
        .seed = 1,
        .stream = 0,
    };
    return settings;
}

fedkd_status fedkd_synthetic_generate(fedkd_dataset **out, const fedkd_synthetic_settings *settings)
{
    if (!out || !settings) return FEDKD_FAIL(FEDKD_ERR_INVALID, "synthetic data: NULL argument");
    *out = NULL;
    const fedkd_synthetic_settings *s = settings;
    if (s->count == 0)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "synthetic data: count must be > 0");
    if (s->num_classes < 1 || s->num_classes > SYNTHETIC_MAX_CLASSES)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "synthetic data: num_classes = %d, expected 1..%d",
                          s->num_classes, SYNTHETIC_MAX_CLASSES);
    if (!(s->separation >= 0.0f) || !isfinite(s->separation))
        return FEDKD_FAIL(FEDKD_ERR_INVALID,
                          "synthetic data: separation = %g, expected a finite number >= 0",
                          (double)s->separation);

    char origin[128];
    snprintf(origin, sizeof origin, "synthetic(seed=%llu, stream=%llu)",
             (unsigned long long)s->seed, (unsigned long long)s->stream);
    fedkd_dataset *dataset = NULL;
    fedkd_status status = fedkd_dataset_allocate(&dataset, s->count, s->shape, s->num_classes,
                                                 origin);
    if (status != FEDKD_OK) return status;

    size_t features = fedkd_shape_size(s->shape);
    float *means = malloc((size_t)s->num_classes * features * sizeof *means); /* (classes, features) */
    if (!means) {
        fedkd_dataset_destroy(&dataset);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "synthetic data: cannot allocate %d class means",
                          s->num_classes);
    }
    /* The means come from a stream that ignores `stream`, so the train and
     * test draws of one seed describe the same task. */
    fedkd_rng mean_rng = fedkd_rng_stream(s->seed, FEDKD_RNG_SYNTHETIC, 0, 0);
    for (size_t i = 0; i < (size_t)s->num_classes * features; i++)
        means[i] = s->separation * (float)fedkd_rng_normal(&mean_rng);

    fedkd_rng sample_rng = fedkd_rng_stream(s->seed, FEDKD_RNG_SYNTHETIC, 1, s->stream);
    for (size_t i = 0; i < s->count; i++) {
        int32_t label = (int32_t)(i % (size_t)s->num_classes);
        const float *mean = means + (size_t)label * features;
        float *x = dataset->features + i * features;
        dataset->labels[i] = label;
        for (size_t j = 0; j < features; j++) x[j] = mean[j] + (float)fedkd_rng_normal(&sample_rng);
    }
    free(means);
    *out = dataset;
    return FEDKD_OK;
}
