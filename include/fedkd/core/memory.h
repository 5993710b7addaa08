/* Memory checked before it is spent: what a node can give a run, and one
 * collective check of every rank's estimate against it. */
#ifndef FEDKD_CORE_MEMORY_H
#define FEDKD_CORE_MEMORY_H

#include <stddef.h>

#include <mpi.h>

#include "fedkd/core/status.h"

/* Bytes this node can give the run: the least of MemAvailable
 * (/proc/meminfo), the room left under the process's cgroup limit
 * (memory.max minus memory.current, cgroup v2; memory.limit_in_bytes minus
 * usage, v1), SLURM_MEM_PER_NODE, and SLURM_MEM_PER_CPU times
 * SLURM_CPUS_ON_NODE (or times ranks_on_node without it). `source` names
 * the limit that won ("MemAvailable", "cgroup memory.max", ...). Returns a
 * negative number when none could be read. */
double fedkd_memory_available(int ranks_on_node, char *source, size_t source_size);

/* Collective over `comm`: each rank gives the bytes it estimates it will
 * need and a short account of them ("model 1.2 GiB, data 40 MiB, ..."),
 * and the bytes its node's ranks will share (the same on every rank; the
 * node's first rank counts them once, in its own line).
 * The ranks sharing a node add theirs up and compare the sum with
 * fedkd_memory_available; a node that cannot hold it fails the check on
 * every rank, one line naming the rank, its estimate, the node's sum and
 * the limit. With `report` set, rank 0 prints every rank's estimate and each
 * node's limit (`--dry-run`). */
fedkd_status fedkd_memory_check(MPI_Comm comm, double needed_bytes, double node_shared_bytes,
                                const char *account, int report);

/* "1.5 GiB", "320 MiB", "12 KiB", "80 B". */
void fedkd_memory_format(double bytes, char *out, size_t out_size);

#endif
