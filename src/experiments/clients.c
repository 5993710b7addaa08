/* The clients a rank hosts in the pretrain and kd-study modes: the
 * federation's placement and client set (include/fedkd/data/clientset.h), plus
 * the test set on every rank that hosts a client. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "experiments/experiments_private.h"

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
    return fedkd_train_model_spec(config, k->shape, k->num_classes, &k->spec);
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
