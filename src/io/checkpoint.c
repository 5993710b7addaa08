/* Writing checkpoints in parallel, finding the newest one, and deciding
 * whether a config may resume from one. The layout is in
 * include/fedkd/io/checkpoint.h; reading is in checkpoint_read.c.
 *
 * Every rank of the federation's communicator takes part in one write: the
 * metadata (groups, datasets, attributes) is created collectively with the
 * same arguments on every rank, then each rank writes only the data it owns
 * (independent MPI-IO): rank 0 the global model, the server state, the
 * partition and the metrics; each client rank the state rows of the clients
 * it hosts. A failed data write never skips a later collective call, so a
 * full disk on one rank cannot leave the others waiting. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fedkd/core/core.h"
#include "fedkd/io/model_file.h"
#include "fedkd/core/comm.h"
#include "io/checkpoint_internal.h"
#include "io/h5_util.h"

/* ---- agreement ----------------------------------------------------------------- */

/* Every rank learns the worst status; only the lowest failing rank keeps its
 * message, so a failure is told once. Waits without spinning (fedkd_comm_wait). */
static fedkd_status agree_once(MPI_Comm comm, fedkd_status local)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    int mine[2] = {(int)local, local ? -rank : INT_MIN}, all[2] = {0, 0};
    MPI_Request request;
    if (MPI_Iallreduce(mine, all, 2, MPI_INT, MPI_MAX, comm, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iallreduce failed while writing a checkpoint");
    fedkd_status waited = fedkd_comm_wait(&request, "the checkpoint agreement");
    if (waited) return waited;
    if (all[0] == FEDKD_OK) return FEDKD_OK;
    if (!local || -all[1] != rank) fedkd_error_clear();
    return (fedkd_status)all[0];
}

/* An environment switch: set, not empty and not "0". */
static int env_flag(const char *name)
{
    const char *value = getenv(name);
    return value && value[0] && strcmp(value, "0") != 0;
}

/* ---- writing ----------------------------------------------------------------------- */

/* A write happens in two phases. First every rank creates all groups,
 * attributes and datasets (collective) and the file is flushed, so that all
 * of HDF5's own structures are on disk. Then each rank writes the data it
 * owns (independent). A full disk therefore fails a data write, never a
 * metadata write, and the file can still be closed cleanly: HDF5 1.10 does
 * not survive a failed close of a parallel file (it crashes at exit). */
enum { MAX_PENDING = 16 };

typedef struct pending_write {
    hid_t dataset;
    hid_t memory_type;
    const void *data;
    const char *where;
} pending_write;

typedef struct writer {
    hid_t file;
    const char *name;       /* the .tmp path, for messages */
    int rank;
    fedkd_status data;      /* first failed data write of this rank */
    pending_write pending[MAX_PENDING];
    int num_pending;
    hid_t client_state;     /* /clients/state, when this rank has rows for it */
    hid_t metrics_type;     /* memory type of /metrics/rounds */
    int64_t *sizes;         /* rank 0: (num_clients) */
    int64_t *offsets;       /* rank 0: (num_clients + 1) */
} writer;

static void note_data_failure(writer *w, fedkd_status status)
{
    if (status && !w->data) w->data = status;
}

static fedkd_status make_group(writer *w, hid_t parent, const char *name, hid_t *group)
{
    *group = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (*group < 0) {
        char reason[256];
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create group `%s`: %s", w->name, name,
                          fedkd_h5_last_error(reason, sizeof reason));
    }
    return FEDKD_OK;
}

/* Creates a dataset (collective); where this rank owns `data`, the dataset
 * stays open to be written in the second phase. */
static fedkd_status put(writer *w, hid_t parent, const char *name, const char *where,
                        hid_t file_type, hid_t memory_type, int rank, const hsize_t *dims,
                        const void *data)
{
    hid_t dataset;
    fedkd_status status = fedkd_h5_create_dataset(parent, name, file_type, rank, dims, &dataset,
                                                  w->name);
    if (status) return status;
    if (data && w->num_pending < MAX_PENDING) {
        w->pending[w->num_pending++] = (pending_write){dataset, memory_type, data, where};
        return FEDKD_OK;
    }
    if (data) note_data_failure(w, FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: too many datasets", w->name));
    H5Dclose(dataset);
    return FEDKD_OK;
}

static fedkd_status write_client_rows(writer *w, const fedkd_checkpoint_contents *c)
{
    hsize_t row_dims[1] = {c->client_state_len};
    hid_t memory = H5Screate_simple(1, row_dims, NULL);
    hid_t space = H5Dget_space(w->client_state);
    fedkd_status status = FEDKD_OK;
    char reason[256];
    if (memory < 0 || space < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot set up /clients/state: %s", w->name,
                            fedkd_h5_last_error(reason, sizeof reason));
        goto done;
    }
    for (int h = 0; h < c->num_hosted; h++) {
        hsize_t start[2] = {(hsize_t)c->hosted[h], 0}, count[2] = {1, c->client_state_len};
        const float *row = c->client_state + (size_t)h * c->client_state_len;
        if (H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dwrite(w->client_state, H5T_NATIVE_FLOAT, memory, space, H5P_DEFAULT, row) < 0) {
            status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot write client %d's row of /clients/state: %s",
                                w->name, c->hosted[h], fedkd_h5_last_error(reason, sizeof reason));
            break;
        }
    }
done:
    fedkd_h5_close(&memory);
    fedkd_h5_close(&space);
    return status;
}

static fedkd_status create_clients(writer *w, const fedkd_checkpoint_contents *c)
{
    const fedkd_partition *p = c->partition;
    int n = p->num_clients;
    hid_t group;
    fedkd_status status = make_group(w, w->file, "clients", &group);
    if (status) return status;
    int64_t count = n, state_len = (int64_t)c->client_state_len;
    if (w->rank == 0) {
        w->sizes = malloc((size_t)n * sizeof *w->sizes);
        if (!w->sizes) note_data_failure(w, FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory"));
        for (int i = 0; w->sizes && i < n; i++)
            w->sizes[i] = (int64_t)fedkd_partition_client_size(p, i);
    }
    status = fedkd_h5_write_int64_attribute(group, "num_clients", &count, 1, w->name);
    if (!status) status = fedkd_h5_write_int64_attribute(group, "state_len", &state_len, 1, w->name);
    hsize_t dims[2] = {(hsize_t)n, c->client_state_len};
    if (!status)
        status = put(w, group, "num_samples", "/clients/num_samples", H5T_STD_I64LE,
                     H5T_NATIVE_INT64, 1, dims, w->sizes);
    if (!status && c->client_state_len > 0) {
        hid_t dataset;
        status = fedkd_h5_create_dataset(group, "state", H5T_IEEE_F32LE, 2, dims, &dataset,
                                         w->name);
        if (!status && c->num_hosted > 0) w->client_state = dataset;
        else if (!status) H5Dclose(dataset);
    }
    H5Gclose(group);
    return status;
}

static fedkd_status create_partition(writer *w, const fedkd_partition *p)
{
    int root = w->rank == 0;
    int n = p->num_clients;
    hid_t group;
    fedkd_status status = make_group(w, w->file, "partition", &group);
    if (status) return status;
    int64_t classes = p->num_classes, total = (int64_t)p->total, dropped = (int64_t)p->dropped;
    if (root) {
        w->offsets = malloc(((size_t)n + 1) * sizeof *w->offsets);
        if (!w->offsets) note_data_failure(w, FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory"));
        for (int i = 0; w->offsets && i <= n; i++) w->offsets[i] = (int64_t)p->offsets[i];
    }
    status = fedkd_h5_write_string_attribute(group, "scheme", p->scheme, w->name);
    if (!status) status = fedkd_h5_write_int64_attribute(group, "num_classes", &classes, 1, w->name);
    if (!status) status = fedkd_h5_write_int64_attribute(group, "total", &total, 1, w->name);
    if (!status) status = fedkd_h5_write_int64_attribute(group, "dropped", &dropped, 1, w->name);
    hsize_t offset_dims[1] = {(hsize_t)n + 1}, index_dims[1] = {p->offsets[n]};
    hsize_t histogram_dims[2] = {(hsize_t)n, (hsize_t)p->num_classes}, client_dims[1] = {(hsize_t)n};
    if (!status)
        status = put(w, group, "offsets", "/partition/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64,
                     1, offset_dims, w->offsets);
    if (!status)
        status = put(w, group, "indices", "/partition/indices", H5T_STD_U32LE, H5T_NATIVE_UINT32,
                     1, index_dims, root ? p->indices : NULL);
    if (!status)
        status = put(w, group, "histograms", "/partition/histograms", H5T_STD_U32LE,
                     H5T_NATIVE_UINT32, 2, histogram_dims, root ? p->histograms : NULL);
    if (!status)
        status = put(w, group, "noise_sigma", "/partition/noise_sigma", H5T_IEEE_F64LE,
                     H5T_NATIVE_DOUBLE, 1, client_dims, root ? p->noise_sigma : NULL);
    H5Gclose(group);
    return status;
}

static fedkd_status create_metrics(writer *w, const fedkd_checkpoint_contents *c)
{
    int root = w->rank == 0;
    hid_t group, file_type = H5I_INVALID_HID;
    fedkd_status status = make_group(w, w->file, "metrics", &group);
    if (status) return status;
    status = fedkd_checkpoint_metrics_types(&file_type, &w->metrics_type);
    hsize_t dims[1] = {(hsize_t)c->round};
    if (!status)
        status = put(w, group, "rounds", "/metrics/rounds", file_type, w->metrics_type, 1, dims,
                     root ? c->metrics : NULL);
    if (!status)
        status = put(w, group, "wall_seconds", "/metrics/wall_seconds", H5T_IEEE_F64LE,
                     H5T_NATIVE_DOUBLE, 0, dims, root ? &c->wall_seconds : NULL);
    hsize_t score_dims[2] = {(hsize_t)c->round, 2 * (hsize_t)c->num_models};
    if (!status && c->num_models > 0)
        status = put(w, group, "models", "/metrics/models", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2,
                     score_dims, root ? c->model_scores : NULL);
    fedkd_h5_close(&file_type);
    H5Gclose(group);
    return status;
}

/* Phase one, on every rank alike: a failure here is the same everywhere
 * (nothing has touched the disk yet), so it returns at once. */
static fedkd_status create_contents(writer *w, const fedkd_checkpoint_contents *c)
{
    char *config_text = cJSON_PrintUnformatted(c->config->json);
    if (!config_text) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory formatting the config",
                                        w->name);
    int64_t version = FEDKD_CHECKPOINT_FORMAT_VERSION, round = c->round;
    fedkd_status status =
        fedkd_h5_write_string_attribute(w->file, "format", FEDKD_CHECKPOINT_FORMAT, w->name);
    if (!status)
        status = fedkd_h5_write_int64_attribute(w->file, "format_version", &version, 1, w->name);
    if (!status)
        status = fedkd_h5_write_string_attribute(w->file, "fedkd_sim_version", FEDKD_VERSION,
                                                 w->name);
    if (!status) status = fedkd_h5_write_int64_attribute(w->file, "round", &round, 1, w->name);
    if (!status) status = fedkd_h5_write_string_attribute(w->file, "config", config_text, w->name);
    free(config_text);
    if (!status) status = fedkd_model_group_write(w->file, "global", c->spec, NULL, c->num_params);
    if (status) return status;
    hid_t server;
    status = make_group(w, w->file, "server", &server);
    if (status) return status;
    hsize_t server_dims[1] = {c->server_state_len};
    status = put(w, server, "state", "/server/state", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1,
                 server_dims, w->rank == 0 ? c->server_state : NULL);
    H5Gclose(server);
    if (!status) status = create_clients(w, c);
    if (!status) status = create_partition(w, c->partition);
    if (!status) status = create_metrics(w, c);
    if (!status && H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0) {
        char reason[256];
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot write its structure: %s", w->name,
                            fedkd_h5_last_error(reason, sizeof reason));
    }
    return status;
}

/* Phase two: this rank's data. The first failure is kept; the rest is
 * skipped (the file will be deleted). */
static void write_data(writer *w, const fedkd_checkpoint_contents *c)
{
    if (w->rank == 0 && !w->data)
        note_data_failure(w, fedkd_model_group_write_weights(w->file, "global", c->spec, c->global,
                                                             c->num_params));
    for (int i = 0; i < w->num_pending && !w->data; i++)
        note_data_failure(w, fedkd_h5_write_all(w->pending[i].dataset, w->pending[i].memory_type,
                                                w->pending[i].data, w->name, w->pending[i].where));
    if (w->client_state >= 0 && !w->data) note_data_failure(w, write_client_rows(w, c));
}

static void writer_release(writer *w)
{
    for (int i = 0; i < w->num_pending; i++) fedkd_h5_close(&w->pending[i].dataset);
    w->num_pending = 0;
    fedkd_h5_close(&w->client_state);
    fedkd_h5_close(&w->metrics_type);
    free(w->sizes);
    free(w->offsets);
    w->sizes = w->offsets = NULL;
}

static fedkd_status sync_path(const char *path, int directory)
{
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open to sync: %s", path,
                                  strerror(errno));
    int failed = fsync(fd) != 0;
    int saved = errno;
    close(fd);
    /* Some file systems cannot sync a directory; the rename is still atomic. */
    if (failed && !(directory && (saved == EINVAL || saved == EROFS)))
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: sync failed: %s", path, strerror(saved));
    return FEDKD_OK;
}

/* Parses "checkpoint-<digits>.h5" (exactly) into its round; 0 if it is not
 * such a name. With allow_tmp, "checkpoint-<digits>.h5.tmp" is also taken. */
static int round_of_name(const char *name, int allow_tmp, int *is_tmp)
{
    static const char prefix[] = "checkpoint-";
    size_t prefix_length = sizeof prefix - 1;
    if (strncmp(name, prefix, prefix_length) != 0) return 0;
    const char *p = name + prefix_length;
    long round = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 9) round = round * 10 + (*p++ - '0'), digits++;
    if (digits < 6 || round < 1) return 0;
    *is_tmp = 0;
    if (strcmp(p, ".h5") == 0) return (int)round;
    if (allow_tmp && strcmp(p, ".h5.tmp") == 0) {
        *is_tmp = 1;
        return (int)round;
    }
    return 0;
}

static int compare_descending(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* Rank 0, after a commit: keeps the newest `keep` checkpoints, drops stale
 * .tmp files. A file that cannot be deleted is only warned about: the new
 * checkpoint is safe. */
static void prune(const char *dir, int keep)
{
    DIR *listing = opendir(dir);
    if (!listing) return;
    int *rounds = NULL, count = 0, capacity = 0;
    struct dirent *entry;
    while ((entry = readdir(listing))) {
        int is_tmp = 0, round = round_of_name(entry->d_name, 1, &is_tmp);
        if (!round) continue;
        if (is_tmp) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
            if (unlink(path) != 0) fedkd_log_warn("%s: cannot delete: %s", path, strerror(errno));
            continue;
        }
        if (count == capacity) {
            int *grown = realloc(rounds, (size_t)(capacity ? 2 * capacity : 16) * sizeof *grown);
            if (!grown) break;
            rounds = grown;
            capacity = capacity ? 2 * capacity : 16;
        }
        rounds[count++] = round;
    }
    closedir(listing);
    if (rounds) qsort(rounds, (size_t)count, sizeof *rounds, compare_descending);
    for (int i = keep; i < count; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/checkpoint-%06d.h5", dir, rounds[i]);
        if (unlink(path) != 0) fedkd_log_warn("%s: cannot delete: %s", path, strerror(errno));
    }
    free(rounds);
}

/* Bytes of data in the file plus a margin for HDF5's own structures (about
 * 20 KiB for a small model), so that a disk without room is found before
 * MPI-IO writes anything. */
static unsigned long long estimated_size(const fedkd_checkpoint_contents *c)
{
    const fedkd_partition *p = c->partition;
    unsigned long long clients = (unsigned long long)p->num_clients;
    unsigned long long bytes = 4ull * c->num_params + 4ull * c->server_state_len +
                               4ull * c->client_state_len * clients + 8ull * clients +
                               8ull * (clients + 1) + 4ull * p->offsets[p->num_clients] +
                               4ull * clients * (unsigned long long)p->num_classes +
                               8ull * clients + 96ull * (unsigned long long)c->round;
    return bytes + 64ull * 1024;
}

/* Rank 0's checks before any collective file call: the directory takes a
 * new file (root ignores permission bits, so try it) and has room for the
 * checkpoint. Failing here fails alike everywhere, instead of inside
 * MPI_File_open or in the middle of MPI-IO writes. */
static fedkd_status probe_directory(const char *dir, const char *temporary,
                                    const fedkd_checkpoint_contents *c)
{
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create a checkpoint in run directory %s: %s",
                          temporary, dir, strerror(errno));
    close(fd);
    struct statvfs info;
    if (env_flag("FEDKD_TEST_SKIP_SPACE_CHECK") || statvfs(dir, &info) != 0) return FEDKD_OK;
    unsigned long long free_bytes = (unsigned long long)info.f_bavail * info.f_frsize;
    unsigned long long needed = estimated_size(c);
    if (free_bytes < needed) {
        unlink(temporary);
        return FEDKD_FAIL(FEDKD_ERR_IO,
                          "%s: no space left on the device: the file system of run directory "
                          "%s has %llu bytes free, a checkpoint needs about %llu",
                          temporary, dir, free_bytes, needed);
    }
    return FEDKD_OK;
}

/* Rank 0, before the rename: the file must read back as written. HDF5
 * 1.10 does not always report a failed write (a full disk under the serial
 * driver's buffers can pass unnoticed), and a damaged file must never take
 * the place of a good one. Client rows are checked for shape only. */
static fedkd_status verify_written(const char *temporary, const fedkd_checkpoint_contents *c)
{
    fedkd_checkpoint k;
    fedkd_status status = fedkd_checkpoint_read(temporary, &k);
    if (status) {
        char message[1024];
        snprintf(message, sizeof message, "%s", fedkd_error_message());
        return FEDKD_FAIL(FEDKD_ERR_IO, "it does not read back (a failed write?): %s", message);
    }
    const fedkd_partition *p = c->partition;
    int same = k.round == c->round && k.num_params == c->num_params &&
               memcmp(k.global, c->global, c->num_params * sizeof(float)) == 0 &&
               k.server_state_len == c->server_state_len &&
               (c->server_state_len == 0 ||
                memcmp(k.server_state, c->server_state, c->server_state_len * sizeof(float)) == 0) &&
               k.client_state_len == c->client_state_len && k.num_clients == p->num_clients &&
               k.partition->offsets[p->num_clients] == p->offsets[p->num_clients] &&
               memcmp(k.partition->indices, p->indices,
                      p->offsets[p->num_clients] * sizeof *p->indices) == 0;
    for (int i = 0; same && i < c->round; i++) {
        const fedkd_round_metrics *a = &k.metrics[i], *b = &c->metrics[i];
        same = a->round == b->round && a->participants == b->participants &&
               a->test_accuracy == b->test_accuracy && a->test_loss == b->test_loss &&
               a->train_loss == b->train_loss && a->bytes_down == b->bytes_down &&
               a->bytes_up == b->bytes_up;
    }
    size_t scores = (size_t)c->round * 2 * (size_t)c->num_models;
    same = same && k.num_models == c->num_models &&
           (scores == 0 || memcmp(k.model_scores, c->model_scores, scores * sizeof(double)) == 0);
    fedkd_checkpoint_clear(&k);
    if (!same)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: it reads back different from what was written "
                          "(a failed write?)", temporary);
    return FEDKD_OK;
}

/* Adds "the disk is full" to a failure message when that is the cause: the
 * MPI-IO error strings do not always say so. */
static void explain_failure(const char *dir)
{
    struct statvfs info;
    if (statvfs(dir, &info) != 0) return;
    unsigned long long free_bytes = (unsigned long long)info.f_bavail * info.f_frsize;
    if (free_bytes >= 1u << 20) return;
    char message[1024];
    snprintf(message, sizeof message, "%s", fedkd_error_message());
    FEDKD_FAIL(FEDKD_ERR_IO, "%s (the file system of %s is full: %llu bytes free)", message, dir,
               free_bytes);
}

fedkd_status fedkd_checkpoint_write(MPI_Comm comm, const char *dir, int keep,
                                    const fedkd_checkpoint_contents *c, char *written,
                                    size_t written_size)
{
    char final_path[1024], temporary[1040], reason[256];
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    snprintf(final_path, sizeof final_path, "%s/checkpoint-%06d.h5", dir, c->round);
    snprintf(temporary, sizeof temporary, "%s.tmp", final_path);
    if (written && written_size) snprintf(written, written_size, "%s", final_path);
    /* HDF5 is loaded by the ranks that write: with no per-client state,
     * rank 0 alone (src/core/hdf5_lazy.c). */
    fedkd_h5_quiet quiet = {0};
    int quieted = 0;
    writer w;
    memset(&w, 0, sizeof w);
    w.file = w.client_state = w.metrics_type = H5I_INVALID_HID;
    w.name = temporary;
    w.rank = rank;
    /* Clients' state rows are written by their hosts through MPI-IO. With
     * no per-client state (FedAvg, FedProx) rank 0 owns all the data and
     * writes the file alone through the same code: the collective open,
     * metadata and close of MPI-IO cost more than the whole file when 16
     * ranks share 2 cores (bench/README.md, "Checkpoints"). */
    int size = 1;
    MPI_Comm_size(comm, &size);
    int parallel = size > 1 && (c->client_state_len > 0 || env_flag("FEDKD_CHECKPOINT_MPIIO"));
    int writes = parallel || rank == 0;
    fedkd_status local = rank == 0 ? probe_directory(dir, temporary, c) : FEDKD_OK;
    if (!local && writes) local = fedkd_hdf5_load();
    quieted = !local && writes;
    if (quieted) quiet = fedkd_h5_quiet_begin();
    fedkd_status status = FEDKD_OK;
    if (parallel) {
        status = agree_once(comm, local);
        if (status) goto finish;
    }
    if (writes && !local) {
        /* No sieve buffer: raw data goes to the file in H5Dwrite, so that a
         * failed write is reported there and not lost in a later flush. */
        hid_t access = H5Pcreate(H5P_FILE_ACCESS);
        if (access >= 0 && (parallel ? H5Pset_fapl_mpio(access, comm, MPI_INFO_NULL)
                                     : H5Pset_sieve_buf_size(access, 0)) >= 0)
            w.file = H5Fcreate(temporary, H5F_ACC_TRUNC, H5P_DEFAULT, access);
        fedkd_h5_close(&access);
        if (w.file < 0)
            local = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", temporary,
                               fedkd_h5_last_error(reason, sizeof reason));
    }
    if (parallel) {
        status = agree_once(comm, local);
        /* Some ranks may hold the file: closing is collective, and the
         * ranks without it cannot join, so it is left to HDF5's exit. */
        if (status) goto finish;
    }

    if (w.file >= 0) {
        local = create_contents(&w, c);
        if (!local) write_data(&w, c);
    }
    if (!local && rank == 0) {
        const char *sleep_hook = getenv("FEDKD_TEST_SLEEP_IN_CHECKPOINT");
        if (sleep_hook) {
            double seconds = atof(sleep_hook);
            struct timespec pause = {(time_t)seconds,
                                     (long)((seconds - floor(seconds)) * 1e9)};
            nanosleep(&pause, NULL);
        }
    }
    const char *fail_hook = getenv("FEDKD_TEST_FAIL_CHECKPOINT_ON_RANK");
    if (fail_hook && atoi(fail_hook) == rank && !w.data)
        w.data = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot write its data: No space left on device "
                            "(injected by FEDKD_TEST_FAIL_CHECKPOINT_ON_RANK)", temporary);
    if (!local) local = w.data;
    writer_release(&w);
    /* The ranks that are done wait here without spinning while the others
     * write; the close of a parallel file is collective. */
    MPI_Request request;
    if (MPI_Ibarrier(comm, &request) == MPI_SUCCESS) {
        fedkd_status waited = fedkd_comm_wait(&request, "the checkpoint write");
        if (!local) local = waited;
    }
    if (w.file >= 0 && H5Fclose(w.file) < 0 && !local)
        local = FEDKD_FAIL(FEDKD_ERR_IO, "%s: write failed while closing: %s", temporary,
                           fedkd_h5_last_error(reason, sizeof reason));
    w.file = H5I_INVALID_HID;
    if (!local && rank == 0) local = verify_written(temporary, c);
    if (local && rank == 0) explain_failure(dir);
    status = agree_once(comm, local);
    if (status) goto finish;

    local = FEDKD_OK;
    if (rank == 0) {
        local = sync_path(temporary, 0);
        if (!local && rename(temporary, final_path) != 0)
            local = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot rename %s into place: %s", final_path,
                               temporary, strerror(errno));
        if (!local) local = sync_path(dir, 1);
        if (!local) prune(dir, keep);
    }
    status = agree_once(comm, local);

finish:
    if (status) {
        if (rank == 0) unlink(temporary);
        if (fedkd_error_message()[0]) {
            char message[1024];
            snprintf(message, sizeof message, "%s", fedkd_error_message());
            FEDKD_FAIL(status, "checkpoint of round %d not written (older checkpoints are kept): %s",
                       c->round, message);
        }
    }
    if (quieted) fedkd_h5_quiet_end(quiet);
    return status;
}

/* ---- finding ------------------------------------------------------------------------ */

fedkd_status fedkd_checkpoint_find_latest(const char *dir, char *path, size_t path_size,
                                          int *round)
{
    *round = 0;
    if (path_size) path[0] = '\0';
    DIR *listing = opendir(dir);
    if (!listing) {
        if (errno == ENOENT) return FEDKD_OK;
        return FEDKD_FAIL(FEDKD_ERR_IO, "run directory %s: cannot list: %s", dir, strerror(errno));
    }
    struct dirent *entry;
    while ((entry = readdir(listing))) {
        int is_tmp = 0, found = round_of_name(entry->d_name, 0, &is_tmp);
        if (found > *round) *round = found;
    }
    closedir(listing);
    if (*round) snprintf(path, path_size, "%s/checkpoint-%06d.h5", dir, *round);
    return FEDKD_OK;
}

fedkd_status fedkd_checkpoint_remove_all(const char *dir, int *removed)
{
    *removed = 0;
    DIR *listing = opendir(dir);
    if (!listing) {
        if (errno == ENOENT) return FEDKD_OK;
        return FEDKD_FAIL(FEDKD_ERR_IO, "run directory %s: cannot list: %s", dir, strerror(errno));
    }
    fedkd_status status = FEDKD_OK;
    struct dirent *entry;
    while ((entry = readdir(listing)) && !status) {
        int is_tmp = 0;
        if (!round_of_name(entry->d_name, 1, &is_tmp)) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (unlink(path) != 0)
            status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot delete a checkpoint of an earlier run: %s",
                                path, strerror(errno));
        else
            (*removed)++;
    }
    closedir(listing);
    return status;
}

/* ---- may a config resume? ---------------------------------------------------------- */

static const char *const keys_that_may_change[] = {
    "rounds",          "run.dir",         "run.compute_slots", "data.cache_dir",
    "checkpoint.every", "checkpoint.keep", "target_accuracy",   NULL};

int fedkd_checkpoint_key_may_change(const char *key)
{
    for (int i = 0; keys_that_may_change[i]; i++)
        if (strcmp(keys_that_may_change[i], key) == 0) return 1;
    return 0;
}

static void describe_json(const cJSON *item, char *out, size_t size)
{
    if (!item) {
        snprintf(out, size, "absent");
        return;
    }
    char *text = cJSON_PrintUnformatted(item);
    if (!text) {
        snprintf(out, size, "(unprintable)");
        return;
    }
    if (strlen(text) > 60) snprintf(out, size, "%.57s...", text);
    else snprintf(out, size, "%s", text);
    free(text);
}

static int same_value(const cJSON *a, const cJSON *b)
{
    if (!a || !b) return a == b;
    /* Exact for numbers: cJSON_Compare allows a relative epsilon. */
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) return a->valuedouble == b->valuedouble;
    return cJSON_Compare(a, b, 1);
}

/* Walks the leaves of `a` (objects are descended, anything else is a leaf)
 * and finds the first key that differs from `b`. Returns 1 and fills
 * `key`, `value_a`, `value_b` on a difference. */
static int first_difference(const cJSON *a, const cJSON *b, const char *prefix, char *key,
                            size_t key_size, const cJSON **value_a, const cJSON **value_b)
{
    for (const cJSON *item = a ? a->child : NULL; item; item = item->next) {
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "",
                 item->string ? item->string : "");
        const cJSON *other = cJSON_IsObject(b) ? cJSON_GetObjectItemCaseSensitive(b, item->string)
                                               : NULL;
        if (cJSON_IsObject(item) && cJSON_IsObject(other)) {
            if (first_difference(item, other, path, key, key_size, value_a, value_b)) return 1;
            continue;
        }
        if (fedkd_checkpoint_key_may_change(path)) continue;
        if (cJSON_IsObject(item)) {
            /* Only keys that may change below it? Then it is not a difference. */
            if (first_difference(item, NULL, path, key, key_size, value_a, value_b)) return 1;
            continue;
        }
        if (!same_value(item, other)) {
            snprintf(key, key_size, "%s", path);
            *value_a = item;
            *value_b = other;
            return 1;
        }
    }
    return 0;
}

fedkd_status fedkd_checkpoint_check_config(const char *path, const char *stored_json, int round,
                                           const fedkd_config *config)
{
    cJSON *stored = cJSON_Parse(stored_json);
    if (!cJSON_IsObject(stored)) {
        cJSON_Delete(stored);
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `config` is not a JSON object", path);
    }
    char key[256], now[96], then[96];
    const cJSON *a = NULL, *b = NULL;
    fedkd_status status = FEDKD_OK;
    int differs = first_difference(config->json, stored, "", key, sizeof key, &a, &b);
    if (differs) {
        describe_json(a, now, sizeof now);
        describe_json(b, then, sizeof then);
    } else if (first_difference(stored, config->json, "", key, sizeof key, &b, &a)) {
        differs = 1;
        describe_json(a, now, sizeof now);
        describe_json(b, then, sizeof then);
    }
    if (differs)
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "resume refused: config key `%s` is %s but the checkpoint %s was "
                            "written with %s (only rounds, run.dir, run.compute_slots, "
                            "data.cache_dir, checkpoint.* and target_accuracy may change)",
                            key, now, path, then);
    else if (round > config->rounds)
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "resume refused: the checkpoint %s is at round %d, beyond config key "
                            "`rounds` = %d (rounds may only grow)",
                            path, round, config->rounds);
    cJSON_Delete(stored);
    return status;
}
