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

/* A dataset over rows the caller owns: `count` samples at features and
 * labels, inside blocks the caller frees after destroying the dataset (a
 * client set keeps all its hosted clients' rows in one block). */
fedkd_status fedkd_dataset_view(fedkd_dataset **out, float *features, int32_t *labels,
                                size_t count, fedkd_shape shape, int num_classes,
                                const char *origin);
/* Copies rows indices[0..count) of source into dest's rows 0..count, which
 * must have source's sample size; the indices are checked first. */
fedkd_status fedkd_dataset_copy_rows(fedkd_dataset *dest, const fedkd_dataset *source,
                                     const uint32_t *indices, size_t count);

/* Raw training records, in file order, read by one rank for all
 * (fedkd_client_set_load_shared): include/fedkd/data/source.h. */
fedkd_status fedkd_idx_stream_open(fedkd_row_stream **out, const char *images_path, size_t limit);
/* The same, and when the stream covers the whole file and cache_dir is not
 * empty, the cache of images_path and labels_path (src/data/idx_cache.h) is
 * written as the stream is read: complete after its last row. A cache that
 * cannot be written is a warning, never a failure. */
fedkd_status fedkd_idx_stream_open_cached(fedkd_row_stream **out, const char *images_path,
                                          const char *labels_path, size_t limit,
                                          const char *cache_dir);
/* Fashion-MNIST's training images as such a stream (data.train_limit),
 * writing their cache in cache_dir ("" or NULL: none). */
fedkd_status fedkd_fashion_mnist_stream_open(fedkd_row_stream **out, const char *directory,
                                             size_t limit, const char *cache_dir);
/* The cache of a Fashion-MNIST split ("train" or "test") in cache_dir,
 * checked (src/data/idx_cache.h); *out NULL, with the reason in why, when
 * there is none to trust. Fails only when out of memory. */
fedkd_status fedkd_fashion_mnist_cache_open(fedkd_idx_cache **out, const char *directory,
                                            const char *split, const char *cache_dir, char *why,
                                            size_t why_size);
/* fedkd_fashion_mnist_load through the cache in cache_dir: read from it
 * when it can be trusted, else loaded from the gzip files and the cache
 * written for the next run. The same dataset, bit for bit. */
fedkd_status fedkd_fashion_mnist_load_split(fedkd_dataset **out, const char *directory,
                                            const char *split, size_t limit,
                                            const char *cache_dir);
/* Fashion-MNIST pixels (count bytes) as the normalised features
 * fedkd_fashion_mnist_load_rows gives: the same bits. */
void fedkd_fashion_mnist_decode(const unsigned char *bytes, size_t count, float *features);

#endif
