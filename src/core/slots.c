/* Compute slots shared by the ranks of a node: include/fedkd/core/slots.h. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    int node_rank, node_size;
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_size(node, &node_size);
    int limit = slots > 0 ? slots : slots == 0 ? node_cpus(node) : node_size;
    if (limit >= node_size) {
        MPI_Comm_free(&node);
        return NULL;
    }

    /* The node's first rank names and creates the semaphore; the name is
     * unique on the host (its pid, the time, a counter). */
    static unsigned serial;
    char name[64] = {0};
    int failed = 0;
    sem_t *sem = SEM_FAILED;
    if (node_rank == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(name, sizeof name, "/fedkd-slots-%ld-%ld-%u", (long)getpid(),
                 (long)now.tv_nsec, serial++);
        sem = sem_open(name, O_CREAT | O_EXCL, 0600, (unsigned)limit);
        failed = sem == SEM_FAILED;
        if (failed) fedkd_log_warn("compute slots: sem_open(%s) failed: %s; ranks compute "
                                   "without a limit", name, strerror(errno));
    }
    MPI_Bcast(name, (int)sizeof name, MPI_CHAR, 0, node);
    MPI_Bcast(&failed, 1, MPI_INT, 0, node);
    if (!failed && node_rank != 0) {
        sem = sem_open(name, 0);
        failed = sem == SEM_FAILED;
    }
    int any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, node);
    /* Every rank has it open (or gave up): the name can go. */
    if (node_rank == 0 && sem != SEM_FAILED) sem_unlink(name);
    MPI_Comm_free(&node);
    if (any_failed) {
        if (sem != SEM_FAILED) sem_close(sem);
        if (node_rank == 0 && !failed)
            fedkd_log_warn("compute slots: a rank could not open the node's semaphore; ranks "
                           "compute without a limit");
        return NULL;
    }
    fedkd_slots *s = calloc(1, sizeof *s);
    if (!s) {
        /* This rank alone goes without: the others still share the rest. */
        sem_close(sem);
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
    sem_close(s->sem);
    free(s);
}
