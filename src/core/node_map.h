/* Memory the ranks of one node share, for core's own modules (the compute
 * slots, the node-shared collectives). */
#ifndef FEDKD_CORE_NODE_MAP_H
#define FEDKD_CORE_NODE_MAP_H

#include <stddef.h>

#include <mpi.h>

/* Collective over `node` (ranks that share memory). Its rank 0 makes a
 * POSIX shared-memory object of `bytes`, allocated now (a /dev/shm too small
 * for it is a failure here, not a SIGBUS mid-run) and reading as zeros, and
 * runs init(map, context) on it (0 or an errno; NULL: nothing to run); then
 * every rank maps it, the ranks agree, and the object's name is unlinked, so
 * that nothing is left in /dev/shm however the run ends. Returns the mapping
 * on every rank of the node, or NULL on every rank after one warning from
 * the node's rank 0: "<what>: <why>; <fallback>". `refuse` (a test hook)
 * makes rank 0 fail as if the object could not be made. Unmap with
 * munmap(map, bytes). */
void *fedkd_node_map(MPI_Comm node, size_t bytes, int (*init)(void *map, void *context),
                     void *context, const char *what, const char *fallback, int refuse);

#endif
