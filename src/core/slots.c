/* Compute slots shared by the ranks of a node: include/fedkd/core/slots.h. */
#include <errno.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/node_map.h"
#include "fedkd/core/core.h"
#include "fedkd/core/slots.h"

struct fedkd_slots {
    sem_t *sem;
    int limit;
    int held;
};

/* The CPUs this process may run on, as a bit set. */
static void affinity_bits(unsigned char *bits, size_t size)
{
    memset(bits, 0, size);
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        for (long c = 0; c < online && (size_t)c < size * 8; c++)
            bits[c / 8] |= (unsigned char)(1u << (c % 8));
        return;
    }
    for (int c = 0; c < CPU_SETSIZE && (size_t)c < size * 8; c++)
        if (CPU_ISSET(c, &set)) bits[c / 8] |= (unsigned char)(1u << (c % 8));
}

/* The node's semaphore, shared between processes, at the limit. */
static int init_semaphore(void *map, void *context)
{
    return sem_init(map, 1, *(const unsigned *)context) == 0 ? 0 : errno;
}

/* Collective over the node: how many CPUs its ranks may use together. */
static int node_cpus(MPI_Comm node)
{
    unsigned char mine[CPU_SETSIZE / 8], all[CPU_SETSIZE / 8];
    affinity_bits(mine, sizeof mine);
    MPI_Allreduce(mine, all, (int)sizeof mine, MPI_UNSIGNED_CHAR, MPI_BOR, node);
    int count = 0;
    for (size_t i = 0; i < sizeof all; i++) count += __builtin_popcount(all[i]);
    return count > 0 ? count : 1;
}

fedkd_slots *fedkd_slots_open(MPI_Comm comm, int slots)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm node;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) !=
        MPI_SUCCESS)
        return NULL;
    int node_size;
    MPI_Comm_size(node, &node_size);
    int limit = slots > 0 ? slots : slots == 0 ? node_cpus(node) : node_size;
    if (limit >= node_size) {
        MPI_Comm_free(&node);
        return NULL;
    }

    /* The semaphore lives in memory the node's ranks share (the node's first
     * rank makes it and sets it to the limit). */
    unsigned initial = (unsigned)limit;
    sem_t *sem = fedkd_node_map(node, sizeof(sem_t), init_semaphore, &initial, "compute slots",
                                "ranks compute without a limit", 0);
    MPI_Comm_free(&node);
    if (!sem) return NULL;
    fedkd_slots *s = calloc(1, sizeof *s);
    if (!s) {
        /* This rank alone goes without: the others still share the rest. */
        munmap(sem, sizeof(sem_t));
        return NULL;
    }
    s->sem = sem;
    s->limit = limit;
    return s;
}

void fedkd_slots_acquire(fedkd_slots *s)
{
    if (!s || s->held) return;
    while (sem_wait(s->sem) != 0) {
        if (errno != EINTR) return; /* not held: the work runs unlimited */
    }
    s->held = 1;
}

void fedkd_slots_release(fedkd_slots *s)
{
    if (!s || !s->held) return;
    s->held = 0;
    sem_post(s->sem);
}

int fedkd_slots_limit(const fedkd_slots *s) { return s ? s->limit : 0; }

void fedkd_slots_close(fedkd_slots *s)
{
    if (!s) return;
    fedkd_slots_release(s);
    munmap(s->sem, sizeof(sem_t));
    free(s);
}
