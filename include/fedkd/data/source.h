/* Where a run's data comes from: one table of dataset sources, found by the
 * config's `data.name`. A source gives the training labels alone (enough to
 * partition), the features of chosen training rows (what one rank hosts),
 * and the test set (the server's). */
#ifndef FEDKD_SOURCE_H
#define FEDKD_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/config/config.h"
#include "fedkd/data/data.h"

typedef struct fedkd_source_info {
    size_t train_count;
    int num_classes;
    fedkd_shape shape;
    int32_t *train_labels; /* (train_count), owned by the caller: free() */
    /* Sources that cannot read single rows cheaply (gzipped IDX, generated
     * data) hand over the whole training set here; the caller keeps the rows
     * it hosts and destroys the rest. NULL otherwise. */
    fedkd_dataset *full_train;
} fedkd_source_info;

void fedkd_source_info_clear(fedkd_source_info *info);

/* A source's training rows as raw bytes, in file order, one byte per
 * feature: what one rank reads for all in fedkd_client_set_load_shared. */
typedef struct fedkd_row_stream fedkd_row_stream;
/* A checked copy of a source's training rows on disk (src/data/idx_cache.h). */
typedef struct fedkd_idx_cache fedkd_idx_cache;
size_t fedkd_row_stream_count(const fedkd_row_stream *stream);     /* rows it yields */
size_t fedkd_row_stream_row_bytes(const fedkd_row_stream *stream);
/* The next n rows into bytes (n x row_bytes); after the last one, checks
 * that the file ends there (when no limit cut it short). */
fedkd_status fedkd_row_stream_read(fedkd_row_stream *stream, unsigned char *bytes, size_t n);
void fedkd_row_stream_close(fedkd_row_stream **stream);

typedef struct fedkd_source {
    const char *name;
    fedkd_status (*describe)(const fedkd_config *config, fedkd_source_info *info);
    /* rows ascending; returns them in that order. Used when full_train is NULL. */
    fedkd_status (*load_train_rows)(const fedkd_config *config, const uint32_t *rows, size_t n,
                                    fedkd_dataset **out);
    fedkd_status (*load_test)(const fedkd_config *config, fedkd_dataset **out);
    /* Optional, for a file that must be read whole to reach any row (gzip):
     * the training rows as a stream, and `count` of its bytes decoded into
     * the features load_train_rows gives for them (the same bits). */
    fedkd_status (*open_train_stream)(const fedkd_config *config, fedkd_row_stream **out);
    void (*decode_train_values)(const unsigned char *bytes, size_t count, float *features);
    /* Optional: the stream's rows from a checked copy on disk (config key
     * data.cache_dir), which each rank reads its own rows from, and *info
     * as describe gives it, from the copy; *out NULL, with the reason in
     * why, when there is none to trust. */
    fedkd_status (*open_train_cache)(const fedkd_config *config, fedkd_idx_cache **out,
                                     fedkd_source_info *info, char *why, size_t why_size);
} fedkd_source;

extern const fedkd_source *const fedkd_sources[];
/* Fails with a message naming `data.name` and the known sources. */
fedkd_status fedkd_source_find(const char *name, const fedkd_source **out);

#endif
