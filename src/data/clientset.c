/* What one process holds of a run's data: see include/fedkd/data/clientset.h. */
#include "fedkd/data/clientset.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset_internal.h"
#include "data/idx_cache.h"
#include "fedkd/core/comm.h"
#include "fedkd/core/core.h"
#include "fedkd/core/rng.h"
#include "fedkd/data/source.h"

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

fedkd_partition_settings fedkd_partition_settings_from_config(const fedkd_config *config)
{
    fedkd_partition_settings s = fedkd_partition_default_settings();
    snprintf(s.scheme, sizeof s.scheme, "%s", config->partition.scheme);
    s.num_clients = config->clients.count;
    s.alpha = config->partition.alpha;
    s.classes_per_client = config->partition.classes_per_client;
    s.sigma = config->partition.sigma;
    s.min_size = config->partition.min_size;
    s.seed = config->seed;
    return s;
}

static int is_holdout(const fedkd_config *config)
{
    return strcmp(config->public_set.source, "train-holdout") == 0;
}

fedkd_status fedkd_public_holdout_rows(uint64_t seed, size_t train_count, size_t size,
                                       uint32_t **rows)
{
    *rows = NULL;
    if (size == 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `public.size`: the run uses a public set (public.source "
                          "\"train-holdout\"), expected a size > 0, got 0");
    if (size >= train_count)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `public.size`: %zu public rows leave none of the %zu "
                          "training rows for the clients",
                          size, train_count);
    uint32_t *all = malloc(train_count * sizeof *all);
    if (!all) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row numbers", train_count);
    for (size_t i = 0; i < train_count; i++) all[i] = (uint32_t)i;
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_PUBLIC_SPLIT, FEDKD_PUBLIC_STREAM, 0);
    fedkd_rng_shuffle_u32(&rng, all, train_count);
    uint32_t *kept = realloc(all, size * sizeof *kept);
    if (kept) all = kept;
    qsort(all, size, sizeof *all, compare_u32);
    *rows = all;
    return FEDKD_OK;
}

/* Partitions the training rows that are not public. The partitioner sees a
 * compact label array; its row numbers are mapped back afterwards, which
 * keeps them ascending within each client. */
static fedkd_status partition_rest(const fedkd_config *config, const int32_t *labels,
                                   size_t count, int num_classes, const uint32_t *public_rows,
                                   size_t public_count, fedkd_partition **out)
{
    fedkd_partition_settings settings = fedkd_partition_settings_from_config(config);
    if (public_count == 0) return fedkd_partition_create(out, &settings, labels, count, num_classes);

    size_t rest = count - public_count;
    uint32_t *kept = malloc(rest * sizeof *kept);
    int32_t *kept_labels = malloc(rest * sizeof *kept_labels);
    fedkd_status status = FEDKD_OK;
    if (!kept || !kept_labels) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row numbers", rest);
        goto done;
    }
    size_t n = 0, p = 0;
    for (size_t row = 0; row < count; row++) {
        if (p < public_count && public_rows[p] == row) {
            p++;
            continue;
        }
        kept[n] = (uint32_t)row;
        kept_labels[n++] = labels[row];
    }
    status = fedkd_partition_create(out, &settings, kept_labels, rest, num_classes);
    if (status) goto done;
    fedkd_partition *partition = *out;
    size_t assigned = partition->offsets[partition->num_clients];
    for (size_t i = 0; i < assigned; i++) partition->indices[i] = kept[partition->indices[i]];
done:
    free(kept);
    free(kept_labels);
    return status;
}

/* Copies rows `rows` (n, training-set row numbers) of base into dest:
 * base holds either every training row, or (loaded != NULL) only the
 * ascending rows loaded[0..loaded_count). */
static fedkd_status pick_rows(const fedkd_dataset *base, const uint32_t *loaded,
                              size_t loaded_count, const uint32_t *rows, size_t n,
                              fedkd_dataset *dest)
{
    if (!loaded) return fedkd_dataset_copy_rows(dest, base, rows, n);
    uint32_t *positions = malloc((n ? n : 1) * sizeof *positions);
    if (!positions) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row positions", n);
    for (size_t i = 0; i < n; i++) {
        const uint32_t *at = bsearch(&rows[i], loaded, loaded_count, sizeof *loaded, compare_u32);
        positions[i] = (uint32_t)(at - loaded);
    }
    fedkd_status status = fedkd_dataset_copy_rows(dest, base, positions, n);
    free(positions);
    return status;
}

static fedkd_status check_disjoint_from_test(const fedkd_dataset *public_set,
                                             const fedkd_dataset *test, const char *path)
{
    int found = 0;
    size_t i = 0, j = 0;
    fedkd_status status = fedkd_dataset_find_shared(public_set, test, &found, &i, &j);
    if (!status && found)
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `public.source`: sample %zu of %s is test sample %zu; the "
                            "public set must not overlap the test set",
                            i, path, j);
    return status;
}

static fedkd_status load_public_file(const fedkd_config *config, const fedkd_shape *shape,
                                     fedkd_dataset **out)
{
    const char *path = config->public_set.source;
    if (config->data.test_file[0] && strcmp(path, config->data.test_file) == 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `public.source`: %s is the test file (data.test_file); "
                          "the public set must not overlap the test set",
                          path);
    fedkd_status status = fedkd_h5data_load_all(out, path, (size_t)config->public_set.size);
    if (status) {
        char message[1024];
        snprintf(message, sizeof message, "%s", fedkd_error_message());
        return FEDKD_FAIL(status, "config key `public.source`: %s", message);
    }
    fedkd_dataset *d = *out;
    if (d->count == 0) {
        fedkd_dataset_destroy(out);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `public.source`: %s holds no samples; "
                                            "expected a non-empty public set",
                          path);
    }
    if (fedkd_shape_size(d->shape) != fedkd_shape_size(*shape)) {
        size_t got = fedkd_shape_size(d->shape), want = fedkd_shape_size(*shape);
        fedkd_dataset_destroy(out);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `public.source`: %s has samples of %zu features; the "
                          "training data has %zu",
                          path, got, want);
    }
    d->shape = *shape;
    return FEDKD_OK;
}

/* Rows of a stream read per chunk by the reader: 4096 Fashion-MNIST images
 * are 3.2 MB, the reader's buffers twice that. */
#define SHARED_CHUNK_ROWS 4096
/* Rows read from the cache at a time: 200 KB of Fashion-MNIST, a buffer
 * that stays in the cache and costs few page faults. */
#define CACHED_CHUNK_ROWS 256

/* How many of rows[*cursor..count) (ascending) lie below `end`; moves the
 * cursor past them. */
static size_t rows_below(const uint32_t *rows, size_t count, size_t *cursor, size_t end)
{
    size_t start = *cursor;
    while (*cursor < count && rows[*cursor] < end) (*cursor)++;
    return *cursor - start;
}

/* Collective over comm, for a source with a stream: one rank, the reader,
 * reads the training file once and sends every rank the rows it asked for
 * (`rows`, ascending); each rank decodes row i into dest[i] as its chunk
 * arrives, while the reader reads the next. The reader is the last rank,
 * not rank 0, which loads the test set after this (with a warm cache,
 * before the others are waited for). Memory: a chunk on every rank, two
 * more on the reader. *moved (every rank) is what went between ranks. A
 * read error on the reader stops every rank at the next chunk; the reader
 * holds its message. `local` is this rank's status so far: every rank calls this,
 * failed or not, and all of them agree on it first. */
static fedkd_status load_rows_shared(const fedkd_config *config, const fedkd_source *source,
                                     const fedkd_source_info *info, const uint32_t *rows,
                                     size_t n, float *const *dest, MPI_Comm comm,
                                     fedkd_status local, uint64_t *moved)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    const int reader = size - 1;
    const size_t row_bytes = fedkd_shape_size(info->shape);
    fedkd_row_stream *stream = NULL;
    int *counts = NULL, *row_offsets = NULL, *byte_counts = NULL, *displacements = NULL;
    uint32_t *all_rows = NULL;
    size_t *cursors = NULL, *starts = NULL, packed_rows = 0;
    unsigned char *chunk = NULL, *packed = NULL, *mine = NULL;
    MPI_Request request;
    fedkd_status status = local;
    if (status) goto agree;
    if (n > (size_t)INT_MAX || SHARED_CHUNK_ROWS * row_bytes > (size_t)INT_MAX) {
        status = FEDKD_FAIL(FEDKD_ERR_INVALID, "%zu rows of %zu bytes are too many to send",
                            n, row_bytes);
        goto agree;
    }
    counts = malloc((size_t)size * sizeof *counts);
    row_offsets = malloc((size_t)size * sizeof *row_offsets);
    byte_counts = malloc((size_t)size * sizeof *byte_counts);
    displacements = malloc((size_t)size * sizeof *displacements);
    cursors = calloc((size_t)size, sizeof *cursors);
    mine = malloc((n < SHARED_CHUNK_ROWS ? n : SHARED_CHUNK_ROWS) * row_bytes + 1);
    if (!counts || !row_offsets || !byte_counts || !displacements || !cursors || !mine)
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu training rows", n);
    if (!status && rank == reader) {
        status = source->open_train_stream(config, &stream);
        if (!status && fedkd_row_stream_count(stream) != info->train_count)
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "the training images hold %zu records but the labels %zu",
                                fedkd_row_stream_count(stream), info->train_count);
        if (!status && fedkd_row_stream_row_bytes(stream) != row_bytes)
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "the training images have %zu bytes per record, expected %zu",
                                fedkd_row_stream_row_bytes(stream), row_bytes);
    }
agree:
    status = fedkd_comm_agree(comm, status);
    if (status) goto done;
    /* Every rank learns every rank's row count; the reader also their rows. */
    int count = (int)n;
    if (MPI_Iallgather(&count, 1, MPI_INT, counts, 1, MPI_INT, comm, &request) != MPI_SUCCESS) {
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iallgather of the ranks' row counts failed");
        goto done;
    }
    status = fedkd_comm_wait(&request, "the row counts' exchange");
    if (status) goto done;
    size_t total = 0;
    for (int r = 0; r < size; r++) {
        row_offsets[r] = (int)total;
        total += (size_t)counts[r];
    }
    /* No rank hosts a row: nothing to read. */
    if (total == 0) goto done;
    /* The row numbers to the reader, the rows back, a status per chunk. */
    size_t others = total - (size_t)counts[reader];
    size_t chunks = (info->train_count + SHARED_CHUNK_ROWS - 1) / SHARED_CHUNK_ROWS;
    *moved = (uint64_t)others * (sizeof(uint32_t) + row_bytes) +
             (uint64_t)chunks * (uint64_t)(size - 1) * sizeof(int);
    if (rank == reader) {
        all_rows = malloc(total * sizeof *all_rows);
        starts = malloc((size_t)size * sizeof *starts);
        chunk = malloc(SHARED_CHUNK_ROWS * row_bytes);
        packed_rows = SHARED_CHUNK_ROWS;
        packed = malloc(packed_rows * row_bytes);
        if (!all_rows || !starts || !chunk || !packed)
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row numbers", total);
    }
    status = fedkd_comm_agree(comm, status);
    if (status) goto done;
    uint32_t none = 0;
    if (MPI_Igatherv(n ? rows : &none, count, MPI_UINT32_T, all_rows, counts, row_offsets,
                     MPI_UINT32_T, reader, comm, &request) != MPI_SUCCESS) {
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Igatherv of the ranks' rows failed");
        goto done;
    }
    status = fedkd_comm_wait(&request, "the rows' gathering");
    if (status) goto done;
    size_t received = 0, my_cursor = 0;
    for (size_t first = 0; first < info->train_count; first += SHARED_CHUNK_ROWS) {
        size_t in_chunk = info->train_count - first < SHARED_CHUNK_ROWS
                              ? info->train_count - first
                              : SHARED_CHUNK_ROWS;
        size_t end = first + in_chunk;
        int chunk_status = FEDKD_OK;
        if (rank == reader) {
            status = fedkd_row_stream_read(stream, chunk, in_chunk);
            /* Ranks may ask for the same rows (each host its copy of the
             * public set): the chunk's rows for all of them can outgrow it. */
            size_t wanted = 0;
            for (int r = 0; !status && r < size; r++) {
                starts[r] = cursors[r];
                wanted += rows_below(all_rows + row_offsets[r], (size_t)counts[r], &cursors[r],
                                     end);
            }
            if (!status && wanted * row_bytes > (size_t)INT_MAX)
                status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                                    "the ranks ask for %zu rows of %zu bytes among %zu rows of "
                                    "the training file: too many to send at once",
                                    wanted, row_bytes, in_chunk);
            if (!status && wanted > packed_rows) {
                unsigned char *grown = realloc(packed, wanted * row_bytes);
                if (grown) {
                    packed = grown;
                    packed_rows = wanted;
                } else {
                    status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu rows to send",
                                        wanted);
                }
            }
            size_t at = 0;
            for (int r = 0; !status && r < size; r++) {
                const uint32_t *list = all_rows + row_offsets[r];
                size_t k = cursors[r] - starts[r];
                for (size_t i = 0; i < k; i++)
                    memcpy(packed + (at + i) * row_bytes,
                           chunk + (list[starts[r] + i] - first) * row_bytes, row_bytes);
                byte_counts[r] = (int)(k * row_bytes);
                displacements[r] = (int)(at * row_bytes);
                at += k;
            }
            chunk_status = (int)status;
        }
        if (MPI_Ibcast(&chunk_status, 1, MPI_INT, reader, comm, &request) != MPI_SUCCESS) {
            status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ibcast of the reader's status failed");
            goto done;
        }
        status = fedkd_comm_wait(&request, "the reader's status");
        if (status) goto done;
        if (chunk_status != FEDKD_OK) {
            /* Told by the reader alone, which holds the message. */
            fedkd_status told =
                fedkd_comm_agree(comm, rank == reader ? (fedkd_status)chunk_status : FEDKD_OK);
            status = told ? told : (fedkd_status)chunk_status;
            goto done;
        }
        size_t k = rows_below(rows, n, &my_cursor, end);
        if (MPI_Iscatterv(packed, byte_counts, displacements, MPI_BYTE, mine,
                          (int)(k * row_bytes), MPI_BYTE, reader, comm, &request) != MPI_SUCCESS) {
            status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iscatterv of the training rows failed");
            goto done;
        }
        status = fedkd_comm_wait(&request, "the training rows' scatter");
        if (status) goto done;
        for (size_t i = 0; i < k; i++)
            source->decode_train_values(mine + i * row_bytes, row_bytes, dest[received + i]);
        received += k;
    }
done:
    fedkd_row_stream_close(&stream);
    free(counts);
    free(row_offsets);
    free(byte_counts);
    free(displacements);
    free(cursors);
    free(starts);
    free(all_rows);
    free(chunk);
    free(packed);
    free(mine);
    return status;
}

/* 1 on every rank when `flag` is 1 on every rank of comm. */
static fedkd_status all_ranks(MPI_Comm comm, int flag, int *all)
{
    MPI_Request request;
    *all = 0;
    if (MPI_Iallreduce(&flag, all, 1, MPI_INT, MPI_MIN, comm, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iallreduce of the data cache's state failed");
    return fedkd_comm_wait(&request, "the data cache check");
}

/* Each rank reads its own rows (`rows`, ascending) from the cache and
 * decodes row i into dest[i]: nothing moves between ranks. A read that
 * fails, a row that fails its check among them, sets *corrupt (its message
 * is kept for a warning) and the caller falls back to the gzip file; only
 * running out of memory is returned. */
static fedkd_status load_rows_cached(const fedkd_source *source, fedkd_idx_cache *cache,
                                     size_t row_bytes, const uint32_t *rows, size_t n,
                                     float *const *dest, int *corrupt)
{
    *corrupt = 0;
    size_t chunk = n < CACHED_CHUNK_ROWS ? n : CACHED_CHUNK_ROWS;
    unsigned char *bytes = malloc(chunk * row_bytes + 1);
    if (!bytes) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu training rows", chunk);
    for (size_t first = 0; first < n; first += chunk) {
        size_t k = n - first < chunk ? n - first : chunk;
        if (fedkd_idx_cache_read_rows(cache, rows + first, k, bytes) != FEDKD_OK) {
            *corrupt = 1;
            break;
        }
        for (size_t i = 0; i < k; i++)
            source->decode_train_values(bytes + i * row_bytes, row_bytes, dest[first + i]);
    }
    free(bytes);
    return FEDKD_OK;
}

/* Every hosted client's dataset, and the public set's when it is held out
 * of the training rows, as views into one zeroed dataset of all of them
 * (k->rows): a rank's rows in one allocation instead of one per client. */
static fedkd_status hosted_views(fedkd_client_set *k, const fedkd_source_info *info,
                                 size_t total, size_t public_count, int public_from_train)
{
    const size_t floats = fedkd_shape_size(info->shape);
    fedkd_status status =
        fedkd_dataset_allocate(&k->rows, total, info->shape, info->num_classes, "training rows");
    if (status) return status;
    size_t at = 0;
    for (int h = 0; h <= k->num_hosted; h++) {
        size_t count;
        fedkd_dataset **data;
        if (h < k->num_hosted) {
            count = fedkd_partition_client_size(k->partition, k->hosted[h]);
            data = &k->data[h];
        } else {
            if (!public_from_train) break;
            count = public_count;
            data = &k->public_set;
        }
        /* (No rows at all: the dataset's arrays are NULL.) */
        float *features = total ? k->rows->features + at * floats : NULL;
        int32_t *labels = total ? k->rows->labels + at : NULL;
        status = fedkd_dataset_view(data, features, labels, count, info->shape, info->num_classes,
                                    "training rows");
        if (status) return status;
        at += count;
    }
    return FEDKD_OK;
}

/* The shared load's destinations: where each row of `rows` (the ascending
 * union of the hosted clients' and the public set's rows, n) goes in their
 * views: *dest (n); the views' labels are set. */
static fedkd_status shared_destinations(fedkd_client_set *k, const fedkd_source_info *info,
                                        const uint32_t *rows, size_t n,
                                        const uint32_t *public_rows, int public_from_train,
                                        float ***dest)
{
    *dest = malloc((n ? n : 1) * sizeof **dest);
    if (!*dest) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row pointers", n);
    const size_t floats = fedkd_shape_size(info->shape);
    for (int h = 0; h <= k->num_hosted; h++) {
        const uint32_t *mine;
        fedkd_dataset *data;
        if (h < k->num_hosted) {
            mine = k->partition->indices + k->partition->offsets[k->hosted[h]];
            data = k->data[h];
        } else {
            if (!public_from_train) break;
            mine = public_rows;
            data = k->public_set;
        }
        for (size_t i = 0; i < data->count; i++) {
            const uint32_t *at = bsearch(&mine[i], rows, n, sizeof *rows, compare_u32);
            (*dest)[at - rows] = data->features + i * floats;
            data->labels[i] = info->train_labels[mine[i]];
        }
    }
    return FEDKD_OK;
}

static fedkd_status client_set_load(const fedkd_config *config, const int *hosted, int num_hosted,
                                    unsigned flags, MPI_Comm comm, fedkd_client_set *k)
{
    memset(k, 0, sizeof *k);
    k->num_clients = config->clients.count;
    const fedkd_source *source = NULL;
    fedkd_source_info info = {0};
    uint32_t *public_rows = NULL, *union_rows = NULL;
    float **dest = NULL;
    fedkd_dataset *loaded = NULL;
    size_t public_count = 0, union_count = 0;
    const int holdout = (flags & FEDKD_CLIENTSET_PUBLIC) && is_holdout(config);
    const int load_public = (flags & FEDKD_CLIENTSET_PUBLIC) && (flags & FEDKD_CLIENTSET_LOAD_PUBLIC);
    const int public_from_train = load_public && holdout;
    fedkd_status status = fedkd_source_find(config->data.name, &source);
    if (status) return status;
    /* One rank reads the file for all: every rank must reach the shared
     * load, failed or not, so failures before it go there. */
    int comm_size = 1;
    if (comm != MPI_COMM_NULL) MPI_Comm_size(comm, &comm_size);
    const int shared = comm_size > 1 && source->open_train_stream && source->decode_train_values;
    /* The checked copy on disk, when every rank has one to trust: then
     * each reads its own rows and nothing is inflated. */
    fedkd_idx_cache *cache = NULL;
    int cached = 0;
    if (shared && source->open_train_cache) {
        char why[1024];
        status = source->open_train_cache(config, &cache, &info, why, sizeof why);
        fedkd_status agreed = all_ranks(comm, !status && cache, &cached);
        if (!status) status = agreed;
        if (!cached) {
            fedkd_idx_cache_close(&cache);
            fedkd_source_info_clear(&info);
        }
        if (status) goto load;
    }
    if (!cached) status = source->describe(config, &info);
    if (status) goto load;
    k->shape = info.shape;
    k->num_classes = info.num_classes;

    if (holdout) {
        public_count = (size_t)config->public_set.size;
        status = fedkd_public_holdout_rows(config->seed, info.train_count, public_count,
                                           &public_rows);
        if (status) goto load;
        k->public_count = public_count;
    }
    status = partition_rest(config, info.train_labels, info.train_count, info.num_classes,
                            public_rows, public_count, &k->partition);
    if (status) goto load;

    k->hosted = malloc((size_t)(num_hosted > 0 ? num_hosted : 1) * sizeof *k->hosted);
    k->data = calloc((size_t)(num_hosted > 0 ? num_hosted : 1), sizeof *k->data);
    if (!k->hosted || !k->data) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client table");
        goto load;
    }
    for (int h = 0; h < num_hosted; h++) {
        k->hosted[k->num_hosted++] = hosted[h];
        union_count += fedkd_partition_client_size(k->partition, hosted[h]);
    }
    if (public_from_train) union_count += public_count;

    /* One pass over the file for every row this process needs. */
    if (!info.full_train && union_count > 0) {
        union_rows = malloc(union_count * sizeof *union_rows);
        if (!union_rows) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row indices", union_count);
            goto load;
        }
        size_t used = 0;
        for (int h = 0; h < k->num_hosted; h++) {
            int c = k->hosted[h];
            size_t n = fedkd_partition_client_size(k->partition, c);
            memcpy(union_rows + used, k->partition->indices + k->partition->offsets[c],
                   n * sizeof *union_rows);
            used += n;
        }
        if (public_from_train) memcpy(union_rows + used, public_rows, public_count * sizeof *union_rows);
        qsort(union_rows, union_count, sizeof *union_rows, compare_u32);
    }
    status = hosted_views(k, &info, union_count, public_count, public_from_train);
load:
    if (shared) {
        if (!status)
            status = shared_destinations(k, &info, union_rows, union_count, public_rows,
                                         public_from_train, &dest);
        if (cached) {
            /* Every rank must reach the agreements, failed or not. A corrupt
             * cache on any rank sends all of them to the file (whose reader
             * writes the cache anew). */
            int corrupt = 0, intact = 0;
            if (!status)
                status = load_rows_cached(source, cache, fedkd_shape_size(info.shape),
                                          union_rows, union_count, dest, &corrupt);
            if (corrupt) {
                fedkd_log_warn("data.cache_dir: %s; reading the gzip file instead",
                               fedkd_error_message());
                fedkd_error_clear();
            }
            /* The test set too before the others are waited for: the
             * server hosts no rows and would otherwise start it last. */
            if (!status && (flags & FEDKD_CLIENTSET_LOAD_TEST))
                status = source->load_test(config, &k->test);
            status = fedkd_comm_agree(comm, status);
            if (!status) status = all_ranks(comm, !corrupt, &intact);
            fedkd_idx_cache_close(&cache);
            if (status || intact) goto loaded;
        }
        status = load_rows_shared(config, source, &info, union_rows, union_count, dest, comm,
                                  status, &k->setup_bytes);
    } else if (!status && !info.full_train && union_count > 0) {
        status = source->load_train_rows(config, union_rows, union_count, &loaded);
    }
loaded:
    fedkd_idx_cache_close(&cache);
    if (status) goto done;
    const fedkd_dataset *base = info.full_train ? info.full_train : loaded;
    for (int h = 0; h < k->num_hosted && !status; h++) {
        int c = k->hosted[h];
        size_t n = fedkd_partition_client_size(k->partition, c);
        if (!shared)
            status = pick_rows(base, union_rows, union_count,
                               k->partition->indices + k->partition->offsets[c], n, k->data[h]);
        if (status) break;
        fedkd_dataset *data = k->data[h];
        snprintf(data->origin, sizeof data->origin, "client %d", c);
        fedkd_partition_apply_noise(k->partition, c, config->seed, data->features, n,
                                    fedkd_dataset_sample_floats(data));
    }
    if (status) goto done;
    if (public_from_train) {
        if (!shared)
            status = pick_rows(base, union_rows, union_count, public_rows, public_count,
                               k->public_set);
        if (status) goto done;
        snprintf(k->public_set->origin, sizeof k->public_set->origin,
                 "public set (%zu training rows held out)", public_count);
    } else if (load_public) {
        status = load_public_file(config, &k->shape, &k->public_set);
        if (status) goto done;
    }
    if (flags & FEDKD_CLIENTSET_LOAD_TEST) {
        if (!k->test) status = source->load_test(config, &k->test);
        if (status) goto done;
        /* Checked here, before round 1: a test set of another shape would
         * otherwise fail only at the first evaluation, on the ranks that
         * evaluate, while the others had moved on. */
        fedkd_shape t = k->test->shape;
        if (t.channels != k->shape.channels || t.height != k->shape.height ||
            t.width != k->shape.width) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: test samples are %dx%dx%d (channels x height x width) but the "
                                "training samples are %dx%dx%d; the test set must match the "
                                "training set",
                                k->test->origin, t.channels, t.height, t.width, k->shape.channels,
                                k->shape.height, k->shape.width);
            goto done;
        }
        if (k->public_set && !holdout)
            status = check_disjoint_from_test(k->public_set, k->test, config->public_set.source);
    }
    if (!status && (flags & FEDKD_CLIENTSET_PUBLIC) && !holdout) {
        /* Every rank learns the public set's size, loaded or not: only the
         * file's row count is read. */
        if (k->public_set) {
            k->public_count = k->public_set->count;
        } else {
            size_t rows = 0;
            status = fedkd_h5data_count(config->public_set.source, &rows);
            if (status) {
                char message[1024];
                snprintf(message, sizeof message, "%s", fedkd_error_message());
                status = FEDKD_FAIL(status, "config key `public.source`: %s", message);
            }
            if (!status && config->public_set.size > 0 && (size_t)config->public_set.size < rows)
                rows = (size_t)config->public_set.size;
            if (!status && rows == 0)
                status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                    "config key `public.source`: %s holds no samples; expected "
                                    "a non-empty public set",
                                    config->public_set.source);
            k->public_count = rows;
        }
    }
done:
    free(dest);
    free(public_rows);
    free(union_rows);
    fedkd_dataset_destroy(&loaded);
    fedkd_source_info_clear(&info);
    return status;
}

fedkd_status fedkd_client_set_load(const fedkd_config *config, const int *hosted, int num_hosted,
                                   unsigned flags, fedkd_client_set *k)
{
    return client_set_load(config, hosted, num_hosted, flags, MPI_COMM_NULL, k);
}

fedkd_status fedkd_client_set_load_shared(const fedkd_config *config, const int *hosted,
                                          int num_hosted, unsigned flags, MPI_Comm comm,
                                          fedkd_client_set *k)
{
    return client_set_load(config, hosted, num_hosted, flags, comm, k);
}

void fedkd_client_set_free(fedkd_client_set *k)
{
    for (int h = 0; k->data && h < k->num_hosted; h++) fedkd_dataset_destroy(&k->data[h]);
    free(k->data);
    free(k->hosted);
    fedkd_dataset_destroy(&k->public_set);
    fedkd_dataset_destroy(&k->rows);
    fedkd_dataset_destroy(&k->test);
    fedkd_partition_destroy(&k->partition);
    memset(k, 0, sizeof *k);
}

int fedkd_client_set_find(const fedkd_client_set *k, int client)
{
    for (int h = 0; h < k->num_hosted; h++)
        if (k->hosted[h] == client) return h;
    return -1;
}
