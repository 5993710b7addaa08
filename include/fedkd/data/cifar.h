/* CIFAR-10 and CIFAR-100 in their official binary distributions
 * (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"):
 *
 *   CIFAR-10   data_batch_1.bin .. data_batch_5.bin (training, in that
 *              order), test_batch.bin; records of 1 label byte (0..9)
 *   CIFAR-100  train.bin, test.bin; records of 2 label bytes (coarse 0..19,
 *              fine 0..99); the fine label is the class
 *
 * then 3,072 pixel bytes: the 32 x 32 red plane, green, blue, row-major,
 * which is the (channels, height, width) layout of a dataset. Pixels are
 * scaled to [0, 1] and normalised per channel with the training set's mean
 * and standard deviation (below), so every rank and every converted file
 * agree. Files are read by record, so a rank loads only the rows it hosts.
 * Errors name the file, the record and its byte offset. */
#ifndef FEDKD_DATA_CIFAR_H
#define FEDKD_DATA_CIFAR_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/data/data.h"

#define FEDKD_CIFAR_SIDE 32
#define FEDKD_CIFAR_PIXEL_BYTES (3 * FEDKD_CIFAR_SIDE * FEDKD_CIFAR_SIDE)

typedef struct fedkd_cifar_variant {
    const char *name;          /* the data.name: "cifar10", "cifar100" */
    const char *title;         /* "CIFAR-10", for messages */
    int label_bytes;           /* 1 or 2 */
    int num_classes;           /* 10 or 100 */
    const char *subdirectory;  /* what the archive extracts to */
    const char *archive;       /* the file to download */
    const char *train_files[5];/* in order, unused entries NULL */
    const char *test_file;
    float mean[3], std[3];     /* per channel, of the training pixels in [0, 1] */
} fedkd_cifar_variant;

/* "cifar10" or "cifar100"; NULL for another name. */
const fedkd_cifar_variant *fedkd_cifar_find(const char *name);

/* Every label of a split ("train" or "test") of the files in `directory`
 * (or its subdirectory the archive extracts to), limited to the first
 * `limit` records (0: all), and checked against the class range. *labels
 * is malloc'ed (count). A missing file says where to get the dataset. */
fedkd_status fedkd_cifar_labels(const fedkd_cifar_variant *variant, const char *directory,
                                const char *split, size_t limit, int32_t **labels, size_t *count);
/* Rows `rows` (ascending, within the limited count; NULL: all of them) of
 * a split, normalised. Reads only those records. */
fedkd_status fedkd_cifar_load_rows(fedkd_dataset **out, const fedkd_cifar_variant *variant,
                                   const char *directory, const char *split, size_t limit,
                                   const uint32_t *rows, size_t num_rows);
/* Every record of the given files, in order (the first `limit`; 0: all);
 * normalised unless `raw` (then scaled to [0, 1] only). For the converter
 * and tests. */
fedkd_status fedkd_cifar_load_files(fedkd_dataset **out, const fedkd_cifar_variant *variant,
                                    const char *const *paths, int num_paths, size_t limit,
                                    int raw);

/* x = (x - mean[c]) / std[c] for every feature of channel c. */
void fedkd_dataset_normalize_channels(fedkd_dataset *dataset, const float *mean,
                                      const float *std);

#endif
