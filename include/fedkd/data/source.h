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

typedef struct fedkd_source {
    const char *name;
    fedkd_status (*describe)(const fedkd_config *config, fedkd_source_info *info);
    /* rows ascending; returns them in that order. Used when full_train is NULL. */
    fedkd_status (*load_train_rows)(const fedkd_config *config, const uint32_t *rows, size_t n,
                                    fedkd_dataset **out);
    fedkd_status (*load_test)(const fedkd_config *config, fedkd_dataset **out);
} fedkd_source;

extern const fedkd_source *const fedkd_sources[];
/* Fails with a message naming `data.name` and the known sources. */
fedkd_status fedkd_source_find(const char *name, const fedkd_source **out);

#endif
