#include "io/h5_heap_check.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/checked.h"

/* Layout of a global heap collection (HDF5 file format, version 1, with
 * 8-byte lengths as every file this project reads has):
 *   "GCOL", version 1, 3 reserved bytes, collection size (8 bytes), then
 *   objects: index (2), reference count (2), reserved (4), size (8), the
 *   data padded to 8 bytes. Index 0 is the free space: its size spans the
 *   rest of the collection, header included. */
enum { HEAP_HEADER = 16, OBJECT_HEADER = 16, SCAN_BLOCK = 64 << 10 };

static uint64_t little_endian(const unsigned char *p, int bytes)
{
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; i--) value = value << 8 | p[i];
    return value;
}

/* Checks the collection at `offset` of `file`; 0 when it is consistent,
 * else a description of the first problem in `why`. */
static int collection_ok(FILE *file, uint64_t offset, uint64_t file_bytes, char *why,
                         size_t why_size)
{
    unsigned char header[HEAP_HEADER];
    if (fseeko(file, (off_t)offset, SEEK_SET) != 0 ||
        fread(header, 1, sizeof header, file) != sizeof header) {
        snprintf(why, why_size, "its header cannot be read");
        return 0;
    }
    uint64_t size = little_endian(header + 8, 8);
    if (size < HEAP_HEADER || size > file_bytes - offset) {
        snprintf(why, why_size, "its size %llu does not fit the file of %llu bytes",
                 (unsigned long long)size, (unsigned long long)file_bytes);
        return 0;
    }
    unsigned char *chunk = malloc((size_t)size);
    if (!chunk) {
        snprintf(why, why_size, "its %llu bytes cannot be allocated", (unsigned long long)size);
        return 0;
    }
    int ok = fseeko(file, (off_t)offset, SEEK_SET) == 0 && fread(chunk, 1, (size_t)size, file) == size;
    if (!ok) snprintf(why, why_size, "its %llu bytes cannot be read", (unsigned long long)size);
    uint64_t at = HEAP_HEADER;
    while (ok && at < size) {
        if (size - at < OBJECT_HEADER) break; /* too small for an object: free space */
        unsigned index = (unsigned)little_endian(chunk + at, 2);
        uint64_t object = little_endian(chunk + at + 8, 8), need = 0;
        if (index > 0) {
            size_t padded = 0;
            ok = !fedkd_size_add((size_t)object, 7, &padded) &&
                 !fedkd_size_add(padded & ~(size_t)7, OBJECT_HEADER, &padded);
            need = padded;
        } else {
            need = object;
        }
        if (!ok || need == 0 || need > size - at) {
            snprintf(why, why_size, "object %u at byte %llu claims %llu bytes, %llu are left",
                     index, (unsigned long long)(offset + at), (unsigned long long)object,
                     (unsigned long long)(size - at));
            ok = 0;
            break;
        }
        at += need;
    }
    free(chunk);
    return ok;
}

fedkd_status fedkd_h5_check_global_heaps(const char *path, const char *kind)
{
    FILE *file = fopen(path, "rb");
    if (!file) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t file_bytes = fedkd_file_bytes(path);
    unsigned char *block = malloc(SCAN_BLOCK + 8);
    if (!block) {
        fclose(file);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: cannot allocate a read buffer", path);
    }
    fedkd_status status = FEDKD_OK;
    uint64_t base = 0;   /* file offset of block[0] */
    size_t kept = 0;     /* bytes carried over from the previous block */
    for (;;) {
        if (fseeko(file, (off_t)(base + kept), SEEK_SET) != 0) break;
        size_t got = fread(block + kept, 1, SCAN_BLOCK, file);
        size_t length = kept + got;
        if (length < 5) break;
        for (size_t i = 0; i + 5 <= length; i++) {
            if (memcmp(block + i, "GCOL", 4) != 0 || block[i + 4] != 1) continue;
            char why[200];
            if (!collection_ok(file, base + i, file_bytes, why, sizeof why)) {
                status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                    "%s: the global heap at byte %llu is damaged (%s); not "
                                    "readable as %s",
                                    path, (unsigned long long)(base + i), why, kind);
                goto done;
            }
        }
        if (got == 0) break;
        /* Keep the last 4 bytes: a signature may straddle two blocks. */
        memmove(block, block + length - 4, 4);
        base += length - 4;
        kept = 4;
    }
done:
    free(block);
    fclose(file);
    return status;
}
