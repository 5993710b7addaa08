/* Datasets: IDX (optionally gzipped) files such as Fashion-MNIST, the
 * project's HDF5 layout, and a seeded synthetic generator.
 *
 * In memory a dataset is features (n, channels, height, width) as float32,
 * already normalised, and labels (n) as int32 in [0, num_classes). */
#ifndef FEDKD_DATA_H
#define FEDKD_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/nn/nn.h"
#include "fedkd/core/status.h"

typedef struct fedkd_dataset {
    size_t count;
    fedkd_shape shape;   /* per-sample shape */
    int num_classes;
    float *features;     /* (count, shape) */
    int32_t *labels;     /* (count) */
    int borrowed;        /* features and labels lie in another's block, which
                            fedkd_dataset_destroy leaves alone */
    char origin[256];    /* file or generator, for messages */
} fedkd_dataset;

static inline size_t fedkd_dataset_sample_floats(const fedkd_dataset *d)
{
    return fedkd_shape_size(d->shape);
}

void fedkd_dataset_destroy(fedkd_dataset **dataset);
/* Whether a sample of `a` equals a sample of `b`, compared by content
 * exactly (hashes first): *found is 1 and (*index_a, *index_b) the first
 * such pair in a's order, else 0. Sets of another sample size share none. */
fedkd_status fedkd_dataset_find_shared(const fedkd_dataset *a, const fedkd_dataset *b, int *found,
                                       size_t *index_a, size_t *index_b);
/* A new dataset holding rows indices[0..n) of `source`, in that order. */
fedkd_status fedkd_dataset_subset(fedkd_dataset **out, const fedkd_dataset *source,
                                  const uint32_t *indices, size_t n);

/* ---- IDX ------------------------------------------------------------------
 * Reads an IDX images file (magic 0x00000803, uint8, n x rows x cols) and an
 * IDX labels file (0x00000801, uint8, n), gzipped or not. Pixels are scaled
 * to [0, 1]. limit > 0 keeps only the first `limit` samples. Errors name the
 * file and the byte offset or record that is wrong. */
fedkd_status fedkd_idx_load(fedkd_dataset **out, const char *images_path,
                            const char *labels_path, size_t limit);

/* The same, keeping only `rows` (ascending, < the limited count): the file is
 * streamed, so memory grows with num_rows, not with the file. */
fedkd_status fedkd_idx_load_rows(fedkd_dataset **out, const char *images_path,
                                 const char *labels_path, size_t limit, const uint32_t *rows,
                                 size_t num_rows);

/* Fashion-MNIST (or MNIST) from a directory holding the four standard files
 * (train-images-idx3-ubyte[.gz] ...). split is "train" or "test". A missing
 * directory or file gives a message that says how to install the dataset. */
fedkd_status fedkd_fashion_mnist_load(fedkd_dataset **out, const char *directory,
                                      const char *split, size_t limit);
/* Every label of a split (limited to `limit`) and the sample shape, without
 * reading pixels: enough to partition. *labels is malloc'd. */
fedkd_status fedkd_fashion_mnist_labels(const char *directory, const char *split, size_t limit,
                                        int32_t **labels, size_t *count, fedkd_shape *shape);
/* Only the given rows (ascending), streamed. rows == NULL means all. */
fedkd_status fedkd_fashion_mnist_load_rows(fedkd_dataset **out, const char *directory,
                                           const char *split, size_t limit, const uint32_t *rows,
                                           size_t num_rows);

/* Pixel mean and standard deviation of the 60000 Fashion-MNIST training
 * images after scaling to [0, 1]; fedkd_fashion_mnist_load and fedkd-idx2h5
 * normalise with them so every rank and every converted file agree. */
#define FEDKD_FASHION_MNIST_MEAN 0.2860f
#define FEDKD_FASHION_MNIST_STD 0.3530f

/* ---- HDF5 -----------------------------------------------------------------
 * Layout (documented in README.md):
 *   /features  float32 [n, d] or [n, c, h, w]
 *   /labels    int32   [n], values in [0, num_classes)
 *   attribute num_classes (int32) on the root group; if absent, max label + 1.
 * Reading a list of rows selects only those rows (a hyperslab union), so a
 * rank never loads the whole file. */
fedkd_status fedkd_h5data_count(const char *path, size_t *count);
fedkd_status fedkd_h5data_load(fedkd_dataset **out, const char *path, const uint32_t *rows,
                               size_t num_rows);
fedkd_status fedkd_h5data_load_all(fedkd_dataset **out, const char *path, size_t limit);
fedkd_status fedkd_h5data_save(const fedkd_dataset *dataset, const char *path);
/* Everything but the features, reading only /labels: the row count, the
 * per-sample shape, the class count and all labels (*labels is malloc'ed,
 * (count), free() it). For partitioning a file without loading it. Any of
 * the outputs may be NULL. */
fedkd_status fedkd_h5data_describe(const char *path, size_t *count, fedkd_shape *shape,
                                   int *num_classes, int32_t **labels);

/* ---- synthetic ------------------------------------------------------------
 * Gaussian blobs: class means drawn N(0, separation^2) per feature, samples
 * N(mean, 1). Seeded through FEDKD_RNG_SYNTHETIC; `stream` separates train and
 * test draws of the same task. */
typedef struct fedkd_synthetic_settings {
    size_t count;
    fedkd_shape shape;
    int num_classes;
    float separation;
    uint64_t seed;
    uint64_t stream;
} fedkd_synthetic_settings;

fedkd_synthetic_settings fedkd_synthetic_default_settings(void);
fedkd_status fedkd_synthetic_generate(fedkd_dataset **out, const fedkd_synthetic_settings *settings);

/* ---- normalisation --------------------------------------------------------
 * x = (x - mean) / std over every feature. */
void fedkd_dataset_normalize(fedkd_dataset *dataset, float mean, float std);

#endif
