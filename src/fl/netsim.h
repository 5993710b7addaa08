/* Private to src/fl: the simulated clock and client failures
 * (README "Simulated network, dropouts and compressed uploads").
 *
 * Each client gets a device once per run: a compute speed (samples per
 * second), uplink and downlink bandwidths and a latency, drawn from the
 * stream (seed, FEDKD_RNG_NETWORK, client, quantity) or read from the
 * network.trace CSV. A selected client's simulated round time is
 *
 *   latency + bytes_down / down + samples / speed + latency + bytes_up / up
 *
 * with bytes_down the round's broadcast (uncompressed), bytes_up its upload
 * after comm.compression (compress.h) and samples those it trains on (its
 * private epochs or local.steps x local.batch_size, plus the public-set fit
 * of the soft-label algorithms). A selected client fails to report with
 * probability round.dropout, from the stream (seed, FEDKD_RNG_DROPOUT,
 * round, client); with round.deadline_seconds, a client whose time exceeds
 * the deadline is dropped too. Everything is a function of the seed, the
 * round, the selection and sizes every rank knows, so every rank computes
 * the same plan without communicating. */
#ifndef FEDKD_FL_NETSIM_H
#define FEDKD_FL_NETSIM_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/config/config.h"
#include "fedkd/core/status.h"

struct fl_run;

typedef struct fl_device {
    double speed;   /* samples per second */
    double up;      /* bytes per second */
    double down;    /* bytes per second */
    double latency; /* seconds per transfer */
} fl_device;

typedef struct fl_netsim {
    int enabled;          /* network.enabled: the clock runs */
    int num_clients;
    fl_device *devices;   /* (num_clients) when enabled, else NULL */
    double deadline;      /* round.deadline_seconds, 0: none */
    double dropout;       /* round.dropout */
    uint64_t seed;
} fl_netsim;

/* One round's outcome, the same on every rank. */
typedef struct fl_round_plan {
    int *received;        /* (capacity) the selected clients that report, ascending */
    int num_received;
    int *dropped;         /* (capacity) those that do not (failed or late), ascending */
    int num_dropped;
    double seconds;       /* the round's simulated duration (0 without the clock) */
    int capacity;         /* num_clients */
} fl_round_plan;

/* Checks that need no data and no file: the deadline needs the clock,
 * uniform bounds in order, top-k needs something to sparsify. */
fedkd_status fl_netsim_check_config(const fedkd_config *config, int global_model);
/* Draws (or reads from network.trace) every client's device. On failure
 * nothing is left to free. */
fedkd_status fl_netsim_create(fl_netsim *netsim, const fedkd_config *config, int num_clients);
void fl_netsim_free(fl_netsim *netsim);

/* Client `client`'s device from the config's distributions (no trace). */
fl_device fl_netsim_draw(const fedkd_config *config, int client);
/* Reads a trace CSV into devices[0..num_clients): every client exactly once.
 * Rows without a fifth field draw the latency from network.latency. */
fedkd_status fl_netsim_read_trace(const char *path, int num_clients, const fedkd_config *config,
                                  fl_device *devices);
/* 1 when `client` fails to report in `round` (probability `dropout`). */
int fl_netsim_fails(uint64_t seed, double dropout, int round, int client);
/* A client's simulated seconds for a round's transfers and work. */
double fl_netsim_client_seconds(const fl_device *device, double bytes_down, double bytes_up,
                                double samples);

fedkd_status fl_round_plan_alloc(fl_round_plan *plan, int num_clients);
void fl_round_plan_free(fl_round_plan *plan);
/* Who of the round's selected[0..m) (ascending) reports, and how long the
 * round lasts: the slowest selected client's time, or the deadline when
 * someone is dropped under one. Without a clock and without dropout every
 * selected client reports and seconds is 0. */
void fl_netsim_plan(const fl_netsim *netsim, const struct fl_run *run, int round,
                    const int *selected, int m, fl_round_plan *plan);
/* Selection and plan of `round` (>= 1) into plan. -1 when out of memory. */
int fl_round_participants(const struct fl_run *run, int round, fl_round_plan *plan);

#endif
