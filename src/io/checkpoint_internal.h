/* Private to src/io/checkpoint*.c and inspect.c. */
#ifndef FEDKD_IO_CHECKPOINT_INTERNAL_H
#define FEDKD_IO_CHECKPOINT_INTERNAL_H

#include "fedkd/core/hdf5_lazy.h"

#include "fedkd/io/checkpoint.h"

/* The compound type of /metrics/rounds: the file type (packed, little
 * endian) and the memory type (fedkd_round_metrics). Close both. */
fedkd_status fedkd_checkpoint_metrics_types(hid_t *file_type, hid_t *memory_type);

#endif
