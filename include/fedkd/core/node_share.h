/* A round's collectives through memory shared by the ranks of each node:
 * broadcasts from rank 0, and an exact integer sum to rank 0.
 *
 * A federation's round starts with broadcasts from rank 0 (what happens
 * this round, then the weights) and ends with every rank's 64-bit
 * fixed-point update summed at rank 0. As MPI collectives at -np 16 on one
 * 2-core node each hop of their trees waited for a rank to be scheduled:
 * 5 - 7 ms from the round's start to the first step, and 9 - 14 ms for the
 * barrier and the sum after the slowest rank's training (the mlp's 1.6 MB
 * from each rank), while ranks that had finished woke a thousand times a
 * second to test the barrier.
 *
 * Here only the nodes' first ranks (their leaders) meet in MPI. A leader
 * copies what it receives (rank 0: what it sends) into its node's shared
 * memory and wakes the others, which copy it out. At the end of a round,
 * each rank adds its values into its node's sum as soon as its training
 * ends (under a lock, while others still train) and sleeps until its
 * leader is done; the leader sleeps until every rank of its node has
 * added, then reduces with the other leaders. Integer sums are exact, so
 * the result is the same bits as an MPI reduction's, in any order of
 * arrival. Every wait is a futex: no rank polls while others compute.
 *
 * The shared memory is a POSIX shared-memory object, made by the leader
 * and unlinked once every rank of the node has mapped it (nothing is left
 * in /dev/shm). Linux only (futexes).
 *
 * Order: each broadcast area may be reused only after a sum (the sum's
 * leader waits for every rank of the node, so each has read the area by
 * then). A federation's round does header, payload, sum. */
#ifndef FEDKD_CORE_NODE_SHARE_H
#define FEDKD_CORE_NODE_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "fedkd/core/status.h"

typedef struct fedkd_node_share fedkd_node_share;

#define FEDKD_NODE_SHARE_MAX_AREAS 4

/* Collective over `comm` (every rank, P = 1 too): a sum of `count` 64-bit
 * integers a round, and `num_areas` broadcast areas of area_bytes[a] bytes
 * each. Rank 0 of `comm` is the leader of its node (the node's ranks are
 * ordered as in `comm`). Where no node has more than one rank, or the shared
 * memory cannot be made on some node (one warning), every rank is a node of
 * its own and the collectives are MPI's alone, as before this module. The
 * environment variable FEDKD_TEST_RANKS_PER_NODE=k (tests) cuts each node
 * into groups of k consecutive ranks, so that one host exercises the
 * leaders' collectives; FEDKD_TEST_NODE_SHARE_REFUSED=1 makes the shared
 * memory fail to open. Fails (on every rank alike) only when out of memory
 * or when MPI fails. */
fedkd_status fedkd_node_share_open(MPI_Comm comm, size_t count, const size_t *area_bytes,
                                   int num_areas, fedkd_node_share **share);

/* Collective over the communicator: rank 0's `count` items of `type` at
 * `buffer` to every rank, through area `area` (at most its size). Leaders
 * wait for MPI actively, the others asleep. `before_compute`: the ranks
 * compute right after it; where ranks share no memory a barrier (waited
 * for actively) then keeps a rank that has its copy from taking a core from
 * ranks still passing it on. */
fedkd_status fedkd_node_share_bcast(fedkd_node_share *share, int area, void *buffer, int count,
                                    MPI_Datatype type, int before_compute, const char *what);

/* Every rank, once a round, after its own work and before
 * fedkd_node_share_finish: its `values` (count integers, wrapping like
 * MPI_SUM on MPI_INT64_T) for the round's sum and its `seconds` for the
 * maximum. With shared memory they are added into the node's sum at once
 * (under a lock, no MPI call); without, `values` must stay as they are
 * until the finish, and a non-blocking barrier is posted. */
void fedkd_node_share_add(fedkd_node_share *share, const int64_t *values, double seconds);

/* Collective over the communicator, once a round after the add. Rank 0
 * gets every rank's sum in `out` (count integers, not `values`) and the
 * largest `seconds` in *slowest; other ranks' `out` and *slowest are
 * untouched. A leader waits asleep for its node (without shared memory:
 * for the barrier), reduces with the other leaders (MPI, waited for
 * actively) and clears the node's sum for the next round; the other ranks
 * wait asleep for their leader to be done. */
fedkd_status fedkd_node_share_finish(fedkd_node_share *share, int64_t *out, double *slowest);

/* Local; NULL is fine. */
void fedkd_node_share_close(fedkd_node_share *share);

#endif
