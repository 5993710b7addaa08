/* Sizes computed from the contents of a file, checked before they are used.
 *
 * A header, an attribute or a dataset extent is whatever the file says: a
 * damaged or hostile file can claim extents whose product wraps around
 * size_t (and then allocates a few bytes and writes gigabytes), or is zero
 * (and then divides by it). Every such size goes through these helpers. */
#ifndef FEDKD_CHECKED_H
#define FEDKD_CHECKED_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/core/status.h"

/* *out = a * b. Returns 0 when the product fits in size_t, 1 when it
 * overflows (then *out is SIZE_MAX, so that a missed check still fails any
 * allocation instead of making a small one). */
int fedkd_size_mul(size_t a, size_t b, size_t *out);
/* *out = a + b, with the same convention. */
int fedkd_size_add(size_t a, size_t b, size_t *out);

/* The size of `count` extents of `element_bytes` each, as read from `file`.
 * `what` names the object ("dataset /features", "attribute `input_shape` of
 * /global"). Fails with one line naming both when an extent is 0 (unless
 * `allow_empty`), when the product overflows, or when the bytes exceed
 * `limit_bytes` (0: no limit; give the file's size where the data is stored
 * uncompressed, so that a few bytes cannot claim terabytes). *elements and
 * *bytes may be NULL. */
fedkd_status fedkd_size_of_extents(const char *file, const char *what, int count,
                                   const uint64_t *extents, size_t element_bytes,
                                   int allow_empty, uint64_t limit_bytes, size_t *elements,
                                   size_t *bytes);

/* The size of a file in bytes, or 0 when it cannot be found. */
uint64_t fedkd_file_bytes(const char *path);

#endif
