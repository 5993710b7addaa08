/* The clients a rank hosts in the pretrain and kd-study modes: the same
 * placement and data path as a federation (source describe -> partition ->
 * the hosted rows only), plus the test set on every rank that hosts a
 * client, because students are scored where their data lives. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core.h"
#include "fl/fl_private.h"
#include "kd/kd_private.h"

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void kd_scheme_label(const fedkd_config *config, char *out, size_t out_size)
{
    const char *scheme = config->partition.scheme;
    if (strcmp(scheme, "dirichlet") == 0 || strcmp(scheme, "quantity") == 0)
        snprintf(out, out_size, "%s(%g)", scheme, config->partition.alpha);
    else if (strcmp(scheme, "shards") == 0)
        snprintf(out, out_size, "shards(%d)", config->partition.classes_per_client);
    else if (strcmp(scheme, "feature-noise") == 0)
        snprintf(out, out_size, "%s(%g)", scheme, config->partition.sigma);
    else
        snprintf(out, out_size, "%s", scheme);
}

/* Splits the union of the hosted rows (ascending, as loaded) into one
 * dataset per hosted client. */
static fedkd_status split_hosted(const fedkd_config *config, kd_clients *k,
                                 const fedkd_dataset *base, const uint32_t *union_rows,
                                 size_t union_count)
{
    fedkd_status status = FEDKD_OK;
    uint32_t *positions = NULL;
    for (int h = 0; h < k->num_hosted && !status; h++) {
        int c = k->hosted[h];
        const uint32_t *rows = k->partition->indices + k->partition->offsets[c];
        size_t n = fedkd_partition_client_size(k->partition, c);
        const uint32_t *picked = rows;
        if (union_rows) {
            uint32_t *grown = realloc(positions, (n ? n : 1) * sizeof *positions);
            if (!grown) {
                status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for row positions");
                break;
            }
            positions = grown;
            for (size_t i = 0; i < n; i++) {
                const uint32_t *at = bsearch(&rows[i], union_rows, union_count,
                                             sizeof *union_rows, compare_u32);
                positions[i] = (uint32_t)(at - union_rows);
            }
            picked = positions;
        }
        status = fedkd_dataset_subset(&k->data[h], base, picked, n);
        if (status) break;
        fedkd_dataset *data = k->data[h];
        snprintf(data->origin, sizeof data->origin, "client %d", c);
        fedkd_partition_apply_noise(k->partition, c, config->seed, data->features, n,
                                    fedkd_dataset_sample_floats(data));
    }
    free(positions);
    return status;
}

fedkd_status kd_clients_load(const fedkd_config *config, int rank, int size, kd_clients *k)
{
    memset(k, 0, sizeof *k);
    k->rank = rank;
    k->size = size;
    k->num_clients = config->clients.count;
    const fedkd_source *source = NULL;
    fedkd_source_info info = {0};
    uint32_t *union_rows = NULL;
    fedkd_dataset *loaded = NULL;
    fedkd_status status = fedkd_source_find(config->data.name, &source);
    if (status) return status;
    status = source->describe(config, &info);
    if (status) goto done;
    k->shape = info.shape;
    k->num_classes = info.num_classes;

    fedkd_partition_settings ps = fl_partition_settings(config);
    status = fedkd_partition_create(&k->partition, &ps, info.train_labels, info.train_count,
                                    info.num_classes);
    if (status) goto done;
    status = fl_model_spec(config, info.shape, info.num_classes, &k->spec);
    if (status) goto done;

    k->hosted = malloc((size_t)k->num_clients * sizeof *k->hosted);
    k->data = calloc((size_t)k->num_clients, sizeof *k->data);
    if (!k->hosted || !k->data) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client table");
        goto done;
    }
    size_t hosted_rows = 0;
    for (int c = 0; c < k->num_clients; c++)
        if (fedkd_client_host_rank(c, size) == rank) {
            k->hosted[k->num_hosted++] = c;
            hosted_rows += fedkd_partition_client_size(k->partition, c);
        }
    if (k->num_hosted == 0) goto done;

    /* One pass over the file for every hosted client's rows. */
    const fedkd_dataset *base = info.full_train;
    if (!base) {
        union_rows = malloc((hosted_rows ? hosted_rows : 1) * sizeof *union_rows);
        if (!union_rows) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row indices", hosted_rows);
            goto done;
        }
        size_t used = 0;
        for (int h = 0; h < k->num_hosted; h++) {
            int c = k->hosted[h];
            size_t n = fedkd_partition_client_size(k->partition, c);
            memcpy(union_rows + used, k->partition->indices + k->partition->offsets[c],
                   n * sizeof *union_rows);
            used += n;
        }
        qsort(union_rows, hosted_rows, sizeof *union_rows, compare_u32);
        status = source->load_train_rows(config, union_rows, hosted_rows, &loaded);
        if (status) goto done;
        base = loaded;
    }
    status = split_hosted(config, k, base, union_rows, hosted_rows);
    if (status) goto done;
    status = source->load_test(config, &k->test);
done:
    free(union_rows);
    fedkd_dataset_destroy(&loaded);
    fedkd_source_info_clear(&info);
    return status;
}

void kd_clients_free(kd_clients *k)
{
    for (int h = 0; k->data && h < k->num_hosted; h++) fedkd_dataset_destroy(&k->data[h]);
    free(k->data);
    free(k->hosted);
    fedkd_dataset_destroy(&k->test);
    fedkd_partition_destroy(&k->partition);
    memset(k, 0, sizeof *k);
}

int kd_clients_find(const kd_clients *k, int client)
{
    for (int h = 0; h < k->num_hosted; h++)
        if (k->hosted[h] == client) return h;
    return -1;
}

fedkd_status kd_agree(MPI_Comm comm, fedkd_status local)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    /* {worst status, -(lowest failing rank)} in one reduction. */
    int mine[2] = {(int)local, local ? -rank : INT_MIN};
    int all[2] = {0, 0};
    MPI_Request request;
    if (MPI_Iallreduce(mine, all, 2, MPI_INT, MPI_MAX, comm, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iallreduce failed while checking the ranks' status");
    fedkd_status waited = fl_wait(&request, "the ranks' status check");
    if (waited) return waited;
    if (all[0] == FEDKD_OK) return FEDKD_OK;
    /* One rank speaks: the lowest one that failed (rank 0 when every rank
     * failed alike, as with a config error all of them parsed). */
    if (rank != -all[1]) fedkd_error_clear();
    return (fedkd_status)all[0];
}
