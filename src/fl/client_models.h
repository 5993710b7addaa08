/* Which model each client trains: config key `clients.models`.
 *
 *   ""                 every client uses `model`
 *   "mlp,cnn"          comma-separated preset names
 *   ["mlp", [...]]     a list of specs: preset names or layer lists
 *
 * Client c uses entry c mod n (round-robin by client id, independent of the
 * number of ranks). FedAvg, FedProx, SCAFFOLD and FedNova average weights
 * and need every client on `model`; FedDF keeps one global model per
 * architecture (`model` first); the soft-label ones (FedMD, DS-FL, FD, DML)
 * keep one model per client. Entries that describe the same network are
 * one architecture. */
#ifndef FEDKD_FL_CLIENT_MODELS_H
#define FEDKD_FL_CLIENT_MODELS_H

#include <stddef.h>

#include "fedkd/config/config.h"
#include "fedkd/fl/fl.h"
#include "fedkd/io/metrics.h"
#include "fedkd/nn/nn.h"

typedef struct fl_client_models {
    int num_entries;             /* 1 when clients.models is "" */
    fedkd_model_spec *specs;     /* (num_entries) */
    size_t *num_params;          /* (num_entries) */
    size_t max_params;           /* the largest, the length of a client's state row */
    int mixed;                   /* 1: two entries describe different networks */
    /* Distinct networks: architecture 0 is `model`'s (whether or not an
     * entry uses it), then every other network in order of its first entry. */
    int num_architectures;
    int *architecture;           /* (num_entries) each entry's architecture */
    size_t *architecture_params; /* (num_architectures) */
    int *architecture_entry;     /* (num_architectures) its first entry, -1 for `model` unused */
} fl_client_models;

/* Architectures of one global model each, at most (FedDF). */
#define FL_MAX_ARCHITECTURES FEDKD_MAX_MODEL_METRICS

/* Entry of client c. */
static inline int fl_client_model_entry(const fl_client_models *m, int client)
{
    return client % m->num_entries;
}

/* Architecture of client c. */
static inline int fl_client_architecture(const fl_client_models *m, int client)
{
    return m->architecture[fl_client_model_entry(m, client)];
}

/* Entries of clients.models (0 when it is ""), without the data: for the
 * check below and for messages. */
int fl_client_models_count(const fedkd_config *config);

/* Refuses, before anything is loaded, clients.models entries that differ
 * from `model` when the algorithm needs one architecture (it averages
 * weights). Every rank reaches the same verdict from the config alone. */
fedkd_status fl_client_models_check(const fedkd_config *config, const fedkd_algorithm *algorithm);

/* Resolves every entry (and `model`) for the data's input shape and
 * classes and groups the entries by architecture; messages name
 * `clients.models` and the entry. */
fedkd_status fl_client_models_resolve(const fedkd_config *config, fedkd_shape input,
                                      int num_classes, fl_client_models *out);
/* For algorithms that keep one global model per architecture (FedDF):
 * refuses, naming the key, an architecture that no client trains (`model`
 * used by no entry, or an entry at or past clients.count whose network no
 * earlier entry has) and more than FL_MAX_ARCHITECTURES of them. */
fedkd_status fl_client_models_check_held(const fedkd_config *config, const fl_client_models *m);
void fl_client_models_free(fl_client_models *m);

#endif
