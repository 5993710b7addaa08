/* Which model each client trains: config key `clients.models`.
 *
 *   ""                 every client uses `model`
 *   "mlp,cnn"          comma-separated preset names
 *   ["mlp", [...]]     a list of specs: preset names or layer lists
 *
 * Client c uses entry c mod n (round-robin by client id, independent of the
 * number of ranks). Algorithms that average weights (FedAvg, FedProx, FedDF)
 * need every client on `model`; the soft-label ones (FedMD, DS-FL, FD, DML)
 * take mixed architectures. */
#ifndef FEDKD_FL_CLIENT_MODELS_H
#define FEDKD_FL_CLIENT_MODELS_H

#include <stddef.h>

#include "fedkd/config/config.h"
#include "fedkd/fl/fl.h"
#include "fedkd/nn/nn.h"

typedef struct fl_client_models {
    int num_entries;             /* 1 when clients.models is "" */
    fedkd_model_spec *specs;     /* (num_entries) */
    size_t *num_params;          /* (num_entries) */
    size_t max_params;           /* the largest, the length of a client's state row */
    int mixed;                   /* 1: two entries describe different networks */
} fl_client_models;

/* Entry of client c. */
static inline int fl_client_model_entry(const fl_client_models *m, int client)
{
    return client % m->num_entries;
}

/* Entries of clients.models (0 when it is ""), without the data: for the
 * check below and for messages. */
int fl_client_models_count(const fedkd_config *config);

/* Refuses, before anything is loaded, clients.models entries that differ
 * from `model` when the algorithm needs one architecture (it averages
 * weights). Every rank reaches the same verdict from the config alone. */
fedkd_status fl_client_models_check(const fedkd_config *config, const fedkd_algorithm *algorithm);

/* Resolves every entry for the data's input shape and classes; messages
 * name `clients.models` and the entry. */
fedkd_status fl_client_models_resolve(const fedkd_config *config, fedkd_shape input,
                                      int num_classes, fl_client_models *out);
void fl_client_models_free(fl_client_models *m);

#endif
