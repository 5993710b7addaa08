/* Private to src/data/: an inflated, checksummed copy of a gzipped IDX
 * image file and its labels file (config key `data.cache_dir`), so that a
 * run reads the rows it needs with pread instead of inflating the whole
 * file, and every rank can read its own rows.
 *
 * A cache file is trusted only after it is checked against its sources:
 * their size, modification time and gzip trailer (the CRC-32 and length of
 * the inflated data) must be those the header recorded, the header's own
 * CRC-32 must hold, the labels must give the labels file's CRC-32 and the
 * table of per-row CRC-32Cs its own CRC-32 in the header. Each row is checked
 * against its table entry when it is read (CRC-32C, which the CPU computes
 * about 5 times faster than zlib's CRC-32). The writer checked that the rows
 * give the images file's CRC-32 before it wrote them. A cache that fails any check is
 * not used (and is rewritten by the next full read of the file). It is
 * written under a temporary name and renamed, so a reader sees a whole file
 * or none; two runs writing the same cache at once each rename a complete
 * one. Layout (integers little-endian):
 *
 *   header   magic "FEDKDIXC", version, header bytes, records, rows, cols,
 *            the two sources' identities, the path of the images file,
 *            CRC-32 of the header
 *   labels   records bytes
 *   table    records x uint32: CRC-32C of each row
 *   rows     records x rows x cols bytes, as in the IDX file */
#ifndef FEDKD_DATA_IDX_CACHE_H
#define FEDKD_DATA_IDX_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/core/status.h"

typedef struct fedkd_idx_cache fedkd_idx_cache;

/* The cache directory a config value names: "" is none (returns 0), a
 * leading "~/" is $HOME's. Returns 1 with the directory in out. */
int fedkd_idx_cache_dir(const char *configured, char *out, size_t out_size);

/* Opens the cache of images_path and labels_path in `dir` and checks it as
 * above. *out is NULL when there is none to trust; `why` then says why
 * (missing, stale, corrupt). Fails only when out of memory. */
fedkd_status fedkd_idx_cache_open(fedkd_idx_cache **out, const char *dir,
                                  const char *images_path, const char *labels_path, char *why,
                                  size_t why_size);
uint32_t fedkd_idx_cache_records(const fedkd_idx_cache *cache);
uint32_t fedkd_idx_cache_height(const fedkd_idx_cache *cache);
uint32_t fedkd_idx_cache_width(const fedkd_idx_cache *cache);
/* The label byte of every record. */
const unsigned char *fedkd_idx_cache_labels(const fedkd_idx_cache *cache);
/* Rows `rows` (n, ascending) into bytes (n x rows x cols). Fails with
 * FEDKD_ERR_FORMAT, naming the cache file and the row, when a row does not
 * match its CRC-32C or the file cannot be read. */
fedkd_status fedkd_idx_cache_read_rows(fedkd_idx_cache *cache, const uint32_t *rows, size_t n,
                                       unsigned char *bytes);
void fedkd_idx_cache_close(fedkd_idx_cache **cache);

/* Writing a cache while the images are inflated for a run. Nothing here
 * fails the run: a cache that cannot be written is skipped, with the reason
 * in `why`. */
typedef struct fedkd_idx_cache_writer fedkd_idx_cache_writer;

/* NULL (reason in why) when the cache cannot be written: no directory that
 * can be created or written, sources that are not gzip files. */
fedkd_idx_cache_writer *fedkd_idx_cache_writer_begin(const char *dir, const char *images_path,
                                                     const char *labels_path, uint32_t records,
                                                     uint32_t height, uint32_t width, char *why,
                                                     size_t why_size);
/* The next n records, in file order. Returns 0, or -1 (reason in why) after
 * which the writer only waits to be finished or aborted. */
int fedkd_idx_cache_writer_add(fedkd_idx_cache_writer *writer, const unsigned char *bytes,
                               size_t n, char *why, size_t why_size);
/* After every record was added: reads the labels file, checks both files'
 * CRC-32s (the rows' as they were added), writes the rest and renames the file into place. Frees the
 * writer and NULLs *writer. Returns 0, or -1 with the reason in why (then
 * no cache file is left behind). */
int fedkd_idx_cache_writer_finish(fedkd_idx_cache_writer **writer, char *why, size_t why_size);
/* Drops an unfinished cache; NULL-safe. */
void fedkd_idx_cache_writer_abort(fedkd_idx_cache_writer **writer);

#endif
