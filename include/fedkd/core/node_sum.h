/* An exact integer sum over the ranks of a communicator, added up in
 * memory shared by the ranks of each node.
 *
 * A federation's round ends with every rank's 64-bit fixed-point update
 * summed at rank 0. As an MPI reduction at -np 16 on one 2-core node this
 * moved 1.6 MB from each rank (the mlp) through a tree whose every hop
 * waited for a rank to be scheduled: 6 - 13 ms a round, after the slowest
 * rank's training. Here each rank adds its values into its node's sum as
 * soon as its training ends (under a lock, while others still train), and
 * the node's first rank (its leader) waits asleep until every rank of the
 * node has added. Only the leaders, one per node, then meet in an MPI
 * reduction. Integer sums are exact, so the result is the same bits as
 * the MPI reduction's, in any order of arrival.
 *
 * The other ranks of a node, once they have added, sleep until their
 * leader is done (a futex, no polling), so that a rank that finished
 * early takes no CPU from those still training.
 *
 * The shared memory is a POSIX shared-memory object, made by the leader
 * and unlinked once every rank of the node has mapped it (nothing is left
 * in /dev/shm). Linux only (futexes). */
#ifndef FEDKD_CORE_NODE_SUM_H
#define FEDKD_CORE_NODE_SUM_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "fedkd/core/status.h"

typedef struct fedkd_node_sum fedkd_node_sum;

/* Collective over `comm`: `count` 64-bit integers a round. Rank 0 of `comm`
 * must be the leader of its node (it is: the node's ranks are ordered as in
 * `comm`). Returns NULL when no node has more than one rank, or when the
 * shared memory cannot be made on some node (logged once): the caller then
 * reduces with MPI as before. The environment variable
 * FEDKD_TEST_RANKS_PER_NODE=k (tests) cuts each node into groups of k
 * consecutive ranks, so that one host exercises the leaders' reduction. */
fedkd_node_sum *fedkd_node_sum_open(MPI_Comm comm, size_t count);

/* Local, no MPI call (may be called holding a compute slot): adds `values`
 * (count integers, wrapping like MPI_SUM on MPI_INT64_T) into the node's
 * sum for this round and `seconds` into its maximum. */
void fedkd_node_sum_add(fedkd_node_sum *sum, const int64_t *values, double seconds);

/* Collective over `comm`, once a round after this rank's add (a rank with
 * nothing to add skips fedkd_node_sum_add but still calls this). Rank 0
 * gets every rank's sum in `out` (count integers) and the largest
 * `seconds` in *slowest; other ranks' `out` and *slowest are untouched.
 * A leader waits asleep for its node, reduces with the other leaders
 * (MPI, waited for actively) and clears the node's sum for the next
 * round; the other ranks wait asleep for their leader to be done. */
fedkd_status fedkd_node_sum_finish(fedkd_node_sum *sum, int64_t *out, double *slowest);

/* Local; NULL is fine. */
void fedkd_node_sum_close(fedkd_node_sum *sum);

#endif
