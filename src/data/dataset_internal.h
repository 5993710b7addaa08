/* Private to the data layer: allocation shared by the readers and generators. */
#ifndef FEDKD_DATA_DATASET_INTERNAL_H
#define FEDKD_DATA_DATASET_INTERNAL_H

#include "fedkd/data/data.h"

/* A dataset with zeroed features (count, shape) and labels (count).
 * `origin` is copied (truncated to fit) for later messages. count may be 0,
 * in which case features and labels are NULL. */
fedkd_status fedkd_dataset_allocate(fedkd_dataset **out, size_t count, fedkd_shape shape,
                                    int num_classes, const char *origin);

#endif
