/* Compute slots: at most N ranks of one node compute at the same time.
 *
 * A federation at -np 16 on a 2-core machine has 15 client ranks training
 * at once; the kernel time-slices them every few milliseconds, and each
 * slice starts with caches that the previous rank filled with its own
 * model, activations and data. With slots, a rank takes one before a
 * piece of local work (its clients' rounds, the server's evaluation) and gives
 * it back after, so that only as many ranks as there are cores run, each
 * to the end of its piece. The order in which ranks get a slot does not
 * change any result: every piece of work is independent and the sums are
 * exact (README.md, "Guarantees").
 *
 * The slot count lives in a process-shared POSIX semaphore in memory the
 * ranks of a node share (a shared-memory object the node's first rank makes
 * and unlinks once every rank has mapped it, so nothing is left behind in
 * /dev/shm: src/core/node_map.h). A rank waits for a
 * slot in the kernel, without spinning. No MPI call may happen while a slot
 * is held: a rank waiting for a slot could be the one a collective needs. */
#ifndef FEDKD_CORE_SLOTS_H
#define FEDKD_CORE_SLOTS_H

#include <mpi.h>

typedef struct fedkd_slots fedkd_slots;

/* Collective over `comm`. `slots` > 0: at most that many ranks of a node
 * compute at once; 0: as many as the node's ranks have CPUs (the union of
 * their affinity masks); -1: no limit. On a node with no more ranks than
 * slots, nothing is shared and acquire / release do nothing. Never fails:
 * when the semaphore cannot be made on some rank of a node, every rank of
 * that node goes without (logged once) and the run is only slower.
 * Returns NULL when no rank of this node is limited. */
fedkd_slots *fedkd_slots_open(MPI_Comm comm, int slots);

/* Waits for a slot (no-op on NULL). Interrupted waits (a signal) go on
 * waiting: the work must be done before the run can stop cleanly. */
void fedkd_slots_acquire(fedkd_slots *slots);
/* Gives the slot back (no-op on NULL or when none is held). */
void fedkd_slots_release(fedkd_slots *slots);
/* The node's limit, or 0 without one. */
int fedkd_slots_limit(const fedkd_slots *slots);
/* Local (not collective); NULL is fine. */
void fedkd_slots_close(fedkd_slots *slots);

#endif
