/* The checkpoint's /metrics/rounds record (include/fedkd/io/checkpoint.h),
 * shared by the writer (checkpoint.c) and the reader (checkpoint_read.c). */
#include <stddef.h>

#include "fedkd/io/metrics.h"
#include "io/checkpoint_internal.h"
#include "io/h5_util.h"

fedkd_status fedkd_checkpoint_metrics_types(hid_t *file_type, hid_t *memory_type)
{
    typedef struct field {
        const char *name;
        size_t offset;
        hid_t memory, file;
        size_t file_size;
    } field;
#define F(member, memory, file, size) {#member, offsetof(fedkd_round_metrics, member), memory, file, size}
    const field fields[] = {
        F(round, H5T_NATIVE_INT, H5T_STD_I32LE, 4),
        F(participants, H5T_NATIVE_INT, H5T_STD_I32LE, 4),
        F(test_accuracy, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 8),
        F(test_loss, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 8),
        F(train_loss, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 8),
        F(bytes_down, H5T_NATIVE_UINT64, H5T_STD_U64LE, 8),
        F(bytes_up, H5T_NATIVE_UINT64, H5T_STD_U64LE, 8),
        F(wire_bytes, H5T_NATIVE_UINT64, H5T_STD_U64LE, 8),
        F(train_seconds, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 8),
        F(comm_seconds, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 8),
        F(aggregate_seconds, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 8),
        F(eval_seconds, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 8),
        F(round_seconds, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 8),
        F(eval_overlapped, H5T_NATIVE_INT, H5T_STD_I32LE, 4),
    };
#undef F
    size_t count = sizeof fields / sizeof fields[0], packed = 0;
    for (size_t i = 0; i < count; i++) packed += fields[i].file_size;
    *file_type = H5Tcreate(H5T_COMPOUND, packed);
    *memory_type = H5Tcreate(H5T_COMPOUND, sizeof(fedkd_round_metrics));
    int failed = *file_type < 0 || *memory_type < 0;
    size_t at = 0;
    for (size_t i = 0; i < count && !failed; i++) {
        failed |= H5Tinsert(*file_type, fields[i].name, at, fields[i].file) < 0;
        failed |= H5Tinsert(*memory_type, fields[i].name, fields[i].offset, fields[i].memory) < 0;
        at += fields[i].file_size;
    }
    if (failed) {
        fedkd_h5_close(file_type);
        fedkd_h5_close(memory_type);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "cannot build the HDF5 type of the round metrics");
    }
    return FEDKD_OK;
}
