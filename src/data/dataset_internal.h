/* Private to the data layer: allocation shared by the readers and generators. */
#ifndef FEDKD_DATA_DATASET_INTERNAL_H
#define FEDKD_DATA_DATASET_INTERNAL_H

#include "fedkd/data/data.h"
#include "fedkd/data/source.h"

/* A dataset with zeroed features (count, shape) and labels (count).
 * `origin` is copied (truncated to fit) for later messages. count may be 0,
 * in which case features and labels are NULL. */
fedkd_status fedkd_dataset_allocate(fedkd_dataset **out, size_t count, fedkd_shape shape,
                                    int num_classes, const char *origin);

/* Raw training records, in file order, read by one rank for all
 * (fedkd_client_set_load_shared): include/fedkd/data/source.h. */
fedkd_status fedkd_idx_stream_open(fedkd_row_stream **out, const char *images_path, size_t limit);
/* Fashion-MNIST's training images as such a stream (data.train_limit). */
fedkd_status fedkd_fashion_mnist_stream_open(fedkd_row_stream **out, const char *directory,
                                             size_t limit);
/* Fashion-MNIST pixels (count bytes) as the normalised features
 * fedkd_fashion_mnist_load_rows gives: the same bits. */
void fedkd_fashion_mnist_decode(const unsigned char *bytes, size_t count, float *features);

#endif
