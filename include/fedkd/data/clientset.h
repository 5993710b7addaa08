/* The data one process holds in a run: the partition (every rank computes
 * the same one from the labels alone), the local data of the clients it
 * hosts, and on request the public / proxy set and the test set.
 *
 * The public set of the soft-label methods (FedMD, FedDF, DS-FL, DML across
 * clients, the KD-consolidated start) comes from `public.source`:
 *   "train-holdout"  public.size training rows, drawn by the stream
 *                    (seed, FEDKD_RNG_PUBLIC_SPLIT, FEDKD_PUBLIC_STREAM, 0)
 *                    and held out of the partition: no client owns them.
 *   a path           an HDF5 dataset file (the layout of data.h); its first
 *                    public.size rows (all when public.size is 0). Refused
 *                    when it is the test file or shares a sample with the
 *                    test set.
 * The public set's labels are kept in the dataset for diagnostics; the
 * methods that use it treat it as unlabelled. */
#ifndef FEDKD_CLIENTSET_H
#define FEDKD_CLIENTSET_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/data/data.h"
#include "fedkd/data/partition.h"

/* b-key of the public split stream (tuned KD's validation split uses 1). */
#define FEDKD_PUBLIC_STREAM 2u

enum {
    /* The run uses a public set: hold its rows out of the partition. Must
     * be the same on every rank, or the partitions differ. */
    FEDKD_CLIENTSET_PUBLIC = 1u << 0,
    /* This process loads the public set's samples into `public_set`. */
    FEDKD_CLIENTSET_LOAD_PUBLIC = 1u << 1,
    /* This process loads the test set. */
    FEDKD_CLIENTSET_LOAD_TEST = 1u << 2,
};

typedef struct fedkd_client_set {
    int num_clients;
    int num_classes;
    fedkd_shape shape;
    fedkd_partition *partition;  /* every rank: all clients' rows (training-set row numbers) */
    int num_hosted;
    int *hosted;                 /* (num_hosted) client ids, ascending */
    fedkd_dataset **data;        /* (num_hosted) each hosted client's local data */
    fedkd_dataset *public_set;   /* FEDKD_CLIENTSET_LOAD_PUBLIC: the public samples */
    size_t public_count;         /* FEDKD_CLIENTSET_PUBLIC: public samples (every rank) */
    fedkd_dataset *test;         /* FEDKD_CLIENTSET_LOAD_TEST */
    uint64_t setup_bytes;        /* fedkd_client_set_load_shared: bytes moved between ranks */
    /* The hosted clients' rows, and the public set's when it is held out of
     * the training set, in one dataset that data[] and public_set view (a
     * rank's rows in one allocation). */
    fedkd_dataset *rows;
} fedkd_client_set;

/* Describes the data source of config->data, partitions config->clients.count
 * clients (minus the public rows when `flags` has FEDKD_CLIENTSET_PUBLIC),
 * and loads the rows of the clients in hosted[0..num_hosted) (ascending) in
 * one pass over the file, with their feature noise applied, plus what
 * `flags` asks for. Local to the process: every rank given the same config
 * and flags computes the same partition. */
fedkd_status fedkd_client_set_load(const fedkd_config *config, const int *hosted, int num_hosted,
                                   unsigned flags, fedkd_client_set *out);
/* The same, collective over comm (every rank of it calls this, with the
 * same config and flags): for a source that must be read whole to reach any
 * row (gzipped Fashion-MNIST), the last rank reads the training file once
 * and sends each rank its rows, which gives the same datasets as each rank
 * reading its own; out->setup_bytes counts what moved between ranks. Other sources read
 * as fedkd_client_set_load does. On failure every rank returns one, and
 * fedkd_comm_failure_agreed() says whether they all know it already. */
fedkd_status fedkd_client_set_load_shared(const fedkd_config *config, const int *hosted,
                                          int num_hosted, unsigned flags, MPI_Comm comm,
                                          fedkd_client_set *out);
void fedkd_client_set_free(fedkd_client_set *set);
/* Index of `client` among the hosted ones, or -1. */
int fedkd_client_set_find(const fedkd_client_set *set, int client);

/* The config's `partition.*`, `clients.count` and `seed` as partitioner settings. */
fedkd_partition_settings fedkd_partition_settings_from_config(const fedkd_config *config);

/* The held-out public rows of a training set of `train_count` rows:
 * *rows (malloc'ed, ascending, `size` of them). Fails naming `public.size`
 * when size is 0 or leaves fewer than one row for the clients. */
fedkd_status fedkd_public_holdout_rows(uint64_t seed, size_t train_count, size_t size,
                                       uint32_t **rows);

#endif
