/* The clients a rank hosts in the pretrain and kd-study modes: the
 * federation's placement and client set (include/fedkd/clientset.h), plus
 * the test set on every rank that hosts a client. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core.h"
#include "fl/fl_private.h"
#include "kd/kd_private.h"

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

fedkd_status kd_clients_load(const fedkd_config *config, int rank, int size, unsigned flags,
                             kd_clients *k)
{
    memset(k, 0, sizeof *k);
    k->rank = rank;
    k->size = size;
    k->num_clients = config->clients.count;
    int *hosted = malloc((size_t)(k->num_clients > 0 ? k->num_clients : 1) * sizeof *hosted);
    if (!hosted) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client table");
    int num_hosted = fedkd_hosted_clients(k->num_clients, rank, size, hosted);
    /* Students are scored where their data lives. */
    flags |= fl_data_flags(config);
    if (num_hosted > 0) flags |= FEDKD_CLIENTSET_LOAD_TEST | FEDKD_CLIENTSET_LOAD_PUBLIC;
    fedkd_status status = fedkd_client_set_load(config, hosted, num_hosted, flags, &k->set);
    free(hosted);
    if (status) return status;
    k->partition = k->set.partition;
    k->shape = k->set.shape;
    k->num_classes = k->set.num_classes;
    k->num_hosted = k->set.num_hosted;
    k->hosted = k->set.hosted;
    k->data = k->set.data;
    k->test = k->set.test;
    return fl_model_spec(config, k->shape, k->num_classes, &k->spec);
}

void kd_clients_free(kd_clients *k)
{
    fedkd_client_set_free(&k->set);
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
