/* Random crop with padding and horizontal flip (include/fedkd/data/augment.h). */
#include "fedkd/data/augment.h"

#include <string.h>

void fedkd_augment_flip(float *sample, fedkd_shape shape)
{
    int width = shape.width;
    size_t rows = (size_t)shape.channels * (size_t)shape.height;
    for (size_t r = 0; r < rows; r++) {
        float *row = sample + r * (size_t)width;
        for (int x = 0; x < width / 2; x++) {
            float keep = row[x];
            row[x] = row[width - 1 - x];
            row[width - 1 - x] = keep;
        }
    }
}

void fedkd_augment_crop(float *sample, fedkd_shape shape, int padding, int top, int left,
                        float *scratch)
{
    int dy = top - padding, dx = left - padding;
    if (dy == 0 && dx == 0) return;
    int height = shape.height, width = shape.width;
    size_t plane = (size_t)height * (size_t)width;
    memcpy(scratch, sample, (size_t)shape.channels * plane * sizeof(float));
    for (int c = 0; c < shape.channels; c++) {
        const float *from = scratch + (size_t)c * plane;
        float *to = sample + (size_t)c * plane;
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++) {
                int sy = y + dy, sx = x + dx;
                to[(size_t)y * (size_t)width + (size_t)x] =
                    sy >= 0 && sy < height && sx >= 0 && sx < width
                        ? from[(size_t)sy * (size_t)width + (size_t)sx]
                        : 0.0f;
            }
    }
}

void fedkd_augment_batch(const fedkd_augment_settings *settings, fedkd_shape shape,
                         float *samples, int count, fedkd_rng *rng, float *scratch)
{
    size_t floats = fedkd_shape_size(shape);
    uint64_t span = 2 * (uint64_t)settings->padding + 1;
    for (int i = 0; i < count; i++) {
        float *sample = samples + (size_t)i * floats;
        if (settings->padding > 0) {
            int top = (int)fedkd_rng_below(rng, span);
            int left = (int)fedkd_rng_below(rng, span);
            fedkd_augment_crop(sample, shape, settings->padding, top, left, scratch);
        }
        if (settings->flip && fedkd_rng_below(rng, 2)) fedkd_augment_flip(sample, shape);
    }
}
