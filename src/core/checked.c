#include "fedkd/core/checked.h"

#include <stdio.h>
#include <sys/stat.h>

int fedkd_size_mul(size_t a, size_t b, size_t *out)
{
    if (__builtin_mul_overflow(a, b, out)) {
        *out = SIZE_MAX;
        return 1;
    }
    return 0;
}

int fedkd_size_add(size_t a, size_t b, size_t *out)
{
    if (__builtin_add_overflow(a, b, out)) {
        *out = SIZE_MAX;
        return 1;
    }
    return 0;
}

/* "[3, 4294967296, 2]" for messages, cut to fit. */
static void format_extents(char *out, size_t size, int count, const uint64_t *extents)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < count && used + 1 < size; i++) {
        int n = snprintf(out + used, size - used, "%s%llu", i ? ", " : "[",
                         (unsigned long long)extents[i]);
        if (n < 0) return;
        used += (size_t)n;
    }
    if (used + 1 < size) snprintf(out + used, size - used, "]");
}

fedkd_status fedkd_size_of_extents(const char *file, const char *what, int count,
                                   const uint64_t *extents, size_t element_bytes,
                                   int allow_empty, uint64_t limit_bytes, size_t *elements,
                                   size_t *bytes)
{
    char shape[160];
    size_t product = 1, total = 0;
    int overflow = 0, empty = 0;
    for (int i = 0; i < count; i++) {
        if (extents[i] > SIZE_MAX) overflow = 1;
        if (extents[i] == 0) empty = 1;
        if (!overflow) overflow = fedkd_size_mul(product, (size_t)extents[i], &product);
    }
    if (!overflow) overflow = fedkd_size_mul(product, element_bytes, &total);
    format_extents(shape, sizeof shape, count, extents);
    if (empty && !allow_empty)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: %s has extent %s, which holds nothing", file,
                          what, shape);
    if (overflow)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: %s claims extent %s of %zu-byte values, whose size overflows "
                          "(damaged file?)",
                          file, what, shape, element_bytes);
    if (limit_bytes > 0 && (uint64_t)total > limit_bytes)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: %s claims extent %s of %zu-byte values (%zu bytes), more than the "
                          "%llu bytes the file holds (damaged file?)",
                          file, what, shape, element_bytes, total,
                          (unsigned long long)limit_bytes);
    if (elements) *elements = product;
    if (bytes) *bytes = total;
    return FEDKD_OK;
}

uint64_t fedkd_file_bytes(const char *path)
{
    struct stat info;
    if (!path || stat(path, &info) != 0 || info.st_size < 0) return 0;
    return (uint64_t)info.st_size;
}
