/* Helpers for the data-layer tests: a scratch directory that is removed at
 * the end, and writers for small IDX files (plain or gzipped). Fixture files
 * are generated at run time, never committed. */
#ifndef FEDKD_TESTS_DATA_FIXTURE_H
#define FEDKD_TESTS_DATA_FIXTURE_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char fixture_dir[512];

/* Creates a fresh directory under $TMPDIR (or /tmp); returns 0 on failure. */
static inline int fixture_make_dir(const char *name)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(fixture_dir, sizeof fixture_dir, "%s/fedkd-%s-XXXXXX", base, name);
    return mkdtemp(fixture_dir) != NULL;
}

static inline void fixture_free_paths(void);

/* Removes every file in the scratch directory, then the directory. */
static inline void fixture_remove_dir(void)
{
    DIR *dir = opendir(fixture_dir);
    if (!dir) return;
    struct dirent *entry;
    char path[1024];
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", fixture_dir, entry->d_name);
        unlink(path);
    }
    closedir(dir);
    rmdir(fixture_dir);
    fixture_free_paths();
}

/* Paths handed out by fixture_path, freed by fixture_remove_dir. */
static char *fixture_paths[512];
static size_t fixture_num_paths = 0;

/* "<scratch dir>/<name>", valid until fixture_remove_dir. */
static inline const char *fixture_path(const char *name)
{
    size_t size = strlen(fixture_dir) + strlen(name) + 2;
    char *path = malloc(size);
    if (!path || fixture_num_paths == sizeof fixture_paths / sizeof fixture_paths[0]) {
        fprintf(stderr, "fixture_path: out of path slots\n");
        exit(1);
    }
    snprintf(path, size, "%s/%s", fixture_dir, name);
    fixture_paths[fixture_num_paths++] = path;
    return path;
}

/* Frees the paths without touching the files (used when a failing test
 * keeps its scratch files for inspection). */
static inline void fixture_free_paths(void)
{
    for (size_t i = 0; i < fixture_num_paths; i++) free(fixture_paths[i]);
    fixture_num_paths = 0;
}

static inline void fixture_put_u32(unsigned char *out, uint32_t value)
{
    out[0] = (unsigned char)(value >> 24);
    out[1] = (unsigned char)(value >> 16);
    out[2] = (unsigned char)(value >> 8);
    out[3] = (unsigned char)value;
}

/* Writes `bytes` to `path`, through gzip when `gzip` is set. 0 on failure. */
static inline int fixture_write(const char *path, int gzip, const unsigned char *bytes, size_t size)
{
    if (gzip) {
        gzFile gz = gzopen(path, "wb");
        if (!gz) return 0;
        int ok = size == 0 || gzwrite(gz, bytes, (unsigned)size) == (int)size;
        return gzclose(gz) == Z_OK && ok;
    }
    FILE *file = fopen(path, "wb");
    if (!file) return 0;
    int ok = fwrite(bytes, 1, size, file) == size;
    return fclose(file) == 0 && ok;
}

/* The pixel value of image i at byte j used by every fixture. */
static inline unsigned char fixture_pixel(size_t i, size_t j)
{
    return (unsigned char)((i * 37u + j * 11u + (i * j) % 7u) & 0xffu);
}

/* An IDX images file in memory: header (magic, count, rows, cols) then
 * count * rows * cols pixels from fixture_pixel; `data_records` images of
 * data are written whatever the header says. *size gets the byte count. */
static inline unsigned char *fixture_idx_images(uint32_t magic, uint32_t count, uint32_t rows,
                                         uint32_t cols, size_t data_records, size_t *size)
{
    size_t image_bytes = (size_t)rows * cols;
    *size = 16 + data_records * image_bytes;
    unsigned char *bytes = malloc(*size);
    if (!bytes) return NULL;
    fixture_put_u32(bytes, magic);
    fixture_put_u32(bytes + 4, count);
    fixture_put_u32(bytes + 8, rows);
    fixture_put_u32(bytes + 12, cols);
    for (size_t i = 0; i < data_records; i++)
        for (size_t j = 0; j < image_bytes; j++) bytes[16 + i * image_bytes + j] = fixture_pixel(i, j);
    return bytes;
}

/* An IDX labels file in memory: label i is i % classes. */
static inline unsigned char *fixture_idx_labels(uint32_t count, unsigned classes, size_t *size)
{
    *size = 8 + (size_t)count;
    unsigned char *bytes = malloc(*size);
    if (!bytes) return NULL;
    fixture_put_u32(bytes, 0x00000801u);
    fixture_put_u32(bytes + 4, count);
    for (size_t i = 0; i < count; i++) bytes[8 + i] = (unsigned char)(i % classes);
    return bytes;
}

/* Writes a matching images + labels pair; 0 on failure. */
static inline int fixture_write_idx_pair(const char *images_path, const char *labels_path, int gzip,
                                  uint32_t count, uint32_t rows, uint32_t cols, unsigned classes)
{
    size_t image_size = 0, label_size = 0;
    unsigned char *images = fixture_idx_images(0x00000803u, count, rows, cols, count, &image_size);
    unsigned char *labels = fixture_idx_labels(count, classes, &label_size);
    int ok = images && labels && fixture_write(images_path, gzip, images, image_size) &&
             fixture_write(labels_path, gzip, labels, label_size);
    free(images);
    free(labels);
    return ok;
}

#endif
