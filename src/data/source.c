#include "fedkd/data/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/data/cifar.h"
#include "data/dataset_internal.h"
#include "data/idx_cache.h"

void fedkd_source_info_clear(fedkd_source_info *info)
{
    free(info->train_labels);
    fedkd_dataset_destroy(&info->full_train);
    memset(info, 0, sizeof *info);
}

static fedkd_status describe_from_full(fedkd_dataset *full, fedkd_source_info *info)
{
    memset(info, 0, sizeof *info);
    info->train_count = full->count;
    info->num_classes = full->num_classes;
    info->shape = full->shape;
    info->train_labels = malloc((full->count ? full->count : 1) * sizeof(int32_t));
    if (!info->train_labels) {
        fedkd_dataset_destroy(&full);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu training labels", full->count);
    }
    memcpy(info->train_labels, full->labels, full->count * sizeof(int32_t));
    info->full_train = full;
    return FEDKD_OK;
}

/* ---- fashion-mnist: the four IDX files in data.dir ---------------------- */

static fedkd_status fashion_describe(const fedkd_config *config, fedkd_source_info *info)
{
    memset(info, 0, sizeof *info);
    info->num_classes = 10;
    return fedkd_fashion_mnist_labels(config->data.dir, "train", (size_t)config->data.train_limit,
                                      &info->train_labels, &info->train_count, &info->shape);
}

static fedkd_status fashion_load_train_rows(const fedkd_config *config, const uint32_t *rows,
                                            size_t n, fedkd_dataset **out)
{
    return fedkd_fashion_mnist_load_rows(out, config->data.dir, "train",
                                         (size_t)config->data.train_limit, rows, n);
}

/* data.cache_dir as a directory; "" when there is none. */
static const char *cache_dir(const fedkd_config *config, char *out, size_t out_size)
{
    if (!fedkd_idx_cache_dir(config->data.cache_dir, out, out_size)) out[0] = '\0';
    return out;
}

static fedkd_status fashion_open_train_stream(const fedkd_config *config, fedkd_row_stream **out)
{
    char dir[1024];
    return fedkd_fashion_mnist_stream_open(out, config->data.dir, (size_t)config->data.train_limit,
                                           cache_dir(config, dir, sizeof dir));
}

static fedkd_status fashion_open_train_cache(const fedkd_config *config, fedkd_idx_cache **out,
                                             fedkd_source_info *info, char *why, size_t why_size)
{
    char dir[1024];
    memset(info, 0, sizeof *info);
    fedkd_status status = fedkd_fashion_mnist_cache_open(out, config->data.dir, "train",
                                                         cache_dir(config, dir, sizeof dir), why,
                                                         why_size);
    if (status || !*out) return status;
    /* What fashion_describe reads from the files, from the checked copy. */
    size_t records = fedkd_idx_cache_records(*out);
    size_t limit = (size_t)config->data.train_limit;
    info->train_count = limit > 0 && limit < records ? limit : records;
    info->shape = (fedkd_shape){.channels = 1, .height = (int)fedkd_idx_cache_height(*out),
                                .width = (int)fedkd_idx_cache_width(*out)};
    info->num_classes = 10;
    info->train_labels = malloc(info->train_count * sizeof *info->train_labels);
    if (!info->train_labels) {
        fedkd_idx_cache_close(out);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu training labels",
                          info->train_count);
    }
    const unsigned char *labels = fedkd_idx_cache_labels(*out);
    for (size_t i = 0; i < info->train_count; i++) info->train_labels[i] = labels[i];
    return FEDKD_OK;
}

static fedkd_status fashion_load_test(const fedkd_config *config, fedkd_dataset **out)
{
    char dir[1024];
    return fedkd_fashion_mnist_load_split(out, config->data.dir, "test",
                                          (size_t)config->data.test_limit,
                                          cache_dir(config, dir, sizeof dir));
}

/* ---- synthetic: Gaussian blobs, train and test from separate streams ---- */

static fedkd_synthetic_settings synthetic_settings(const fedkd_config *config, size_t count,
                                                   uint64_t stream)
{
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    s.count = count;
    s.shape = (fedkd_shape){config->data.synthetic_features, 1, 1};
    s.num_classes = config->data.synthetic_classes;
    s.separation = (float)config->data.synthetic_separation;
    s.seed = config->seed;
    s.stream = stream;
    return s;
}

static size_t limited(int64_t count, int64_t limit)
{
    return (size_t)((limit > 0 && limit < count) ? limit : count);
}

static fedkd_status synthetic_describe(const fedkd_config *config, fedkd_source_info *info)
{
    fedkd_synthetic_settings s = synthetic_settings(
        config, limited(config->data.synthetic_train, config->data.train_limit), 0);
    fedkd_dataset *full = NULL;
    fedkd_status status = fedkd_synthetic_generate(&full, &s);
    if (status) return status;
    return describe_from_full(full, info);
}

static fedkd_status synthetic_load_test(const fedkd_config *config, fedkd_dataset **out)
{
    fedkd_synthetic_settings s = synthetic_settings(
        config, limited(config->data.synthetic_test, config->data.test_limit), 1);
    return fedkd_synthetic_generate(out, &s);
}

/* ---- hdf5: the project's layout; ranks read only their rows ------------- */

static fedkd_status hdf5_check_file(const char *path, const char *key)
{
    if (!path[0])
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `%s`: expected the path of an HDF5 dataset file "
                          "(data.name is \"hdf5\")", key);
    return FEDKD_OK;
}

static fedkd_status hdf5_describe(const fedkd_config *config, fedkd_source_info *info)
{
    fedkd_status status = hdf5_check_file(config->data.train_file, "data.train_file");
    if (status) return status;
    memset(info, 0, sizeof *info);
    /* Reads /labels only: features are read later, by the ranks hosting them. */
    status = fedkd_h5data_describe(config->data.train_file, &info->train_count, &info->shape,
                                   &info->num_classes, &info->train_labels);
    if (status) return status;
    info->train_count = limited((int64_t)info->train_count, config->data.train_limit);
    return FEDKD_OK;
}

static fedkd_status hdf5_load_train_rows(const fedkd_config *config, const uint32_t *rows,
                                         size_t n, fedkd_dataset **out)
{
    return fedkd_h5data_load(out, config->data.train_file, rows, n);
}

static fedkd_status hdf5_load_test(const fedkd_config *config, fedkd_dataset **out)
{
    fedkd_status status = hdf5_check_file(config->data.test_file, "data.test_file");
    if (status) return status;
    return fedkd_h5data_load_all(out, config->data.test_file, (size_t)config->data.test_limit);
}

/* ---- cifar10, cifar100: the binary files in data.dir; ranks read their rows */

static fedkd_status cifar_describe(const fedkd_config *config, fedkd_source_info *info)
{
    const fedkd_cifar_variant *variant = fedkd_cifar_find(config->data.name);
    memset(info, 0, sizeof *info);
    info->num_classes = variant->num_classes;
    info->shape = (fedkd_shape){3, FEDKD_CIFAR_SIDE, FEDKD_CIFAR_SIDE};
    return fedkd_cifar_labels(variant, config->data.dir, "train",
                              (size_t)config->data.train_limit, &info->train_labels,
                              &info->train_count);
}

static fedkd_status cifar_load_train_rows(const fedkd_config *config, const uint32_t *rows,
                                          size_t n, fedkd_dataset **out)
{
    return fedkd_cifar_load_rows(out, fedkd_cifar_find(config->data.name), config->data.dir,
                                 "train", (size_t)config->data.train_limit, rows, n);
}

static fedkd_status cifar_load_test(const fedkd_config *config, fedkd_dataset **out)
{
    return fedkd_cifar_load_rows(out, fedkd_cifar_find(config->data.name), config->data.dir,
                                 "test", (size_t)config->data.test_limit, NULL, 0);
}

static const fedkd_source fashion_mnist_source = {
    "fashion-mnist", fashion_describe, fashion_load_train_rows, fashion_load_test,
    fashion_open_train_stream, fedkd_fashion_mnist_decode, fashion_open_train_cache};
static const fedkd_source synthetic_source = {
    "synthetic", synthetic_describe, NULL, synthetic_load_test, NULL, NULL, NULL};
static const fedkd_source hdf5_source = {
    "hdf5", hdf5_describe, hdf5_load_train_rows, hdf5_load_test, NULL, NULL, NULL};

static const fedkd_source cifar10_source = {
    "cifar10", cifar_describe, cifar_load_train_rows, cifar_load_test, NULL, NULL, NULL};
static const fedkd_source cifar100_source = {
    "cifar100", cifar_describe, cifar_load_train_rows, cifar_load_test, NULL, NULL, NULL};

const fedkd_source *const fedkd_sources[] = {
    &fashion_mnist_source, &synthetic_source, &hdf5_source, &cifar10_source, &cifar100_source,
    NULL};

fedkd_status fedkd_source_find(const char *name, const fedkd_source **out)
{
    for (int i = 0; fedkd_sources[i]; i++)
        if (strcmp(fedkd_sources[i]->name, name) == 0) {
            *out = fedkd_sources[i];
            return FEDKD_OK;
        }
    return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                      "config key `data.name`: unknown dataset `%s`; expected fashion-mnist, "
                      "synthetic, hdf5, cifar10 or cifar100", name);
}
