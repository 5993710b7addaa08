/* A round's broadcasts and sum through node-shared memory:
 * include/fedkd/core/node_share.h. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "core/node_map.h"
#include "fedkd/core/comm.h"
#include "fedkd/core/core.h"
#include "fedkd/core/node_share.h"

/* The shared mapping: the lock and the round's bookkeeping, then the sum
 * and each broadcast area, each on its own cache lines. */
typedef struct {
    pthread_mutex_t lock;
    double slowest;           /* under the lock */
    _Atomic uint32_t arrived; /* ranks of the node done adding this round */
    _Atomic uint32_t done;    /* rounds the leader has finished (a futex) */
    /* Messages the leader has put in each area (futexes). */
    _Atomic uint32_t published[FEDKD_NODE_SHARE_MAX_AREAS];
} node_header;

static size_t round_up_64(size_t bytes) { return (bytes + 63) / 64 * 64; }

struct fedkd_node_share {
    node_header *shared;
    uint64_t *sum; /* count integers, in the shared mapping */
    size_t count, bytes;
    char *area[FEDKD_NODE_SHARE_MAX_AREAS];
    size_t area_bytes[FEDKD_NODE_SHARE_MAX_AREAS];
    uint32_t seen[FEDKD_NODE_SHARE_MAX_AREAS]; /* messages read from each area */
    int num_areas, node_size, is_leader;
    MPI_Comm leaders; /* the nodes' leaders (MPI_COMM_NULL on the other ranks) */
    /* Without shared memory (each rank a node of its own): this round's
     * values and time, and the barrier posted at fedkd_node_share_add. */
    const int64_t *values;
    double seconds;
    MPI_Request barrier;
    int barrier_posted;
};

static long futex(_Atomic uint32_t *word, int op, uint32_t value, const struct timespec *timeout)
{
    return syscall(SYS_futex, (uint32_t *)word, op, value, timeout, NULL, 0);
}

/* Sleeps while *word == value. Wakes at least every 0.1 s to look again
 * (a lost wake-up costs that, never a hang), and on signals. */
static void sleep_while_equal(_Atomic uint32_t *word, uint32_t value)
{
    const struct timespec timeout = {0, 100000000};
    while (atomic_load(word) == value) futex(word, FUTEX_WAIT, value, &timeout);
}

static void wake_all(_Atomic uint32_t *word) { futex(word, FUTEX_WAKE, INT_MAX, NULL); }

/* The node communicator: ranks sharing memory, or (tests) groups of
 * FEDKD_TEST_RANKS_PER_NODE consecutive ranks of those. */
static int split_nodes(MPI_Comm comm, MPI_Comm *node)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm shared;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &shared) !=
        MPI_SUCCESS)
        return -1;
    const char *test = getenv("FEDKD_TEST_RANKS_PER_NODE");
    int per_node = test ? atoi(test) : 0;
    if (per_node <= 0) {
        *node = shared;
        return 0;
    }
    int shared_rank;
    MPI_Comm_rank(shared, &shared_rank);
    int split = MPI_Comm_split(shared, shared_rank / per_node, rank, node);
    MPI_Comm_free(&shared);
    return split == MPI_SUCCESS ? 0 : -1;
}

/* The lock works across processes and survives a holder's death
 * (EOWNERDEAD: the job ends anyway). */
static int init_lock(void *map, void *context)
{
    node_header *h = map;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    int error = pthread_mutex_init(&h->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return error;
}

/* The node's mapping (its leader makes it, the others map it) and the views
 * into it; 0 on every rank of the node when all could. */
static int map_shared(fedkd_node_share *s, MPI_Comm node)
{
    /* Test hook: the object cannot be made (tests/fl). */
    const char *refuse = getenv("FEDKD_TEST_NODE_SHARE_REFUSED");
    void *map = fedkd_node_map(node, s->bytes, init_lock, NULL, "node-shared collectives",
                               "the ranks use MPI alone", refuse && atoi(refuse) == 1);
    if (!map) return -1;
    s->shared = map;
    size_t offset = round_up_64(sizeof(node_header));
    s->sum = (uint64_t *)((char *)map + offset);
    offset += round_up_64(s->count * sizeof(uint64_t));
    for (int a = 0; a < s->num_areas; a++) {
        s->area[a] = (char *)map + offset;
        offset += round_up_64(s->area_bytes[a]);
    }
    return 0;
}

fedkd_status fedkd_node_share_open(MPI_Comm comm, size_t count, const size_t *area_bytes,
                                   int num_areas, fedkd_node_share **out)
{
    *out = NULL;
    fedkd_node_share *s = calloc(1, sizeof *s);
    fedkd_status status =
        s ? FEDKD_OK : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the round's collectives");
    if (!status && (num_areas < 0 || num_areas > FEDKD_NODE_SHARE_MAX_AREAS))
        status = FEDKD_FAIL(FEDKD_ERR_INVALID, "node-shared collectives: %d areas (at most %d)",
                            num_areas, FEDKD_NODE_SHARE_MAX_AREAS);
    status = fedkd_comm_agree(comm, status);
    if (status) {
        free(s);
        return status;
    }
    int rank;
    MPI_Comm_rank(comm, &rank);
    s->count = count;
    s->num_areas = num_areas;
    s->bytes = round_up_64(sizeof(node_header)) + round_up_64(count * sizeof(uint64_t));
    for (int a = 0; a < num_areas; a++) {
        s->area_bytes[a] = area_bytes[a];
        s->bytes += round_up_64(area_bytes[a]);
    }
    /* Shared memory on every node that has more than one rank, or on none:
     * without it each rank is a node of its own, and its own leader. */
    MPI_Comm node;
    int split = split_nodes(comm, &node) == 0, node_rank = 0, node_size = 1;
    if (split) {
        MPI_Comm_rank(node, &node_rank);
        MPI_Comm_size(node, &node_size);
    }
    int mine[2] = {!split, node_size}, all[2] = {0, 0}; /* {any failed, largest node} */
    MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, comm);
    int failed = all[0] != 0 || all[1] < 2;
    if (!failed) failed = map_shared(s, node) != 0;
    if (split) MPI_Comm_free(&node);
    int any_failed = failed;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, comm);
    if (any_failed) {
        if (s->shared) munmap(s->shared, s->bytes);
        s->shared = NULL;
        node_rank = 0;
        node_size = 1;
    }
    s->node_size = node_size;
    s->is_leader = node_rank == 0;
    s->leaders = MPI_COMM_NULL;
    fedkd_status split_status = FEDKD_OK;
    if (MPI_Comm_split(comm, s->is_leader ? 0 : MPI_UNDEFINED, rank, &s->leaders) != MPI_SUCCESS)
        split_status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Comm_split of the nodes' leaders failed");
    split_status = fedkd_comm_agree(comm, split_status);
    if (split_status) {
        fedkd_node_share_close(s);
        return split_status;
    }
    *out = s;
    return FEDKD_OK;
}

fedkd_status fedkd_node_share_bcast(fedkd_node_share *s, int area, void *buffer, int count,
                                    MPI_Datatype type, int before_compute, const char *what)
{
    int type_size = 0;
    MPI_Type_size(type, &type_size);
    size_t bytes = (size_t)(count > 0 ? count : 0) * (size_t)type_size;
    /* The same on every rank: all fail alike. */
    size_t room = area >= 0 && area < s->num_areas ? s->area_bytes[area] : 0;
    if (area < 0 || area >= s->num_areas || bytes > room)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: %zu bytes for node-shared area %d of %zu",
                          what, bytes, area, room);
    node_header *h = s->shared;
    if (!s->is_leader) {
        sleep_while_equal(&h->published[area], s->seen[area]);
        memcpy(buffer, s->area[area], bytes);
        s->seen[area]++;
        return FEDKD_OK;
    }
    MPI_Request request;
    if (MPI_Ibcast(buffer, count, type, 0, s->leaders, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ibcast failed during %s", what);
    fedkd_status status = fedkd_comm_wait_active(&request, what);
    /* Ranks of one node that share no memory: a barrier, waited for actively
     * too, so that a rank that has its copy does not start computing while
     * others still wait for theirs. With more ranks than cores, the first
     * ranks' training took the cores from those that still had to receive
     * and pass the broadcast on: they started up to 0.09 s late (mlp, -np 16
     * on 2 cores), and the round waited for them. */
    if (!status && !s->shared && before_compute) {
        if (MPI_Ibarrier(s->leaders, &request) != MPI_SUCCESS)
            return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ibarrier failed after %s", what);
        status = fedkd_comm_wait_active(&request, what);
    }
    if (status || !h) return status;
    memcpy(s->area[area], buffer, bytes);
    atomic_fetch_add(&h->published[area], 1);
    wake_all(&h->published[area]);
    return FEDKD_OK;
}

static void lock(node_header *h)
{
    /* A holder that died left the lock consistent enough: the run is over. */
    if (pthread_mutex_lock(&h->lock) == EOWNERDEAD) pthread_mutex_consistent(&h->lock);
}

void fedkd_node_share_add(fedkd_node_share *s, const int64_t *values, double seconds)
{
    node_header *h = s->shared;
    if (!h) {
        /* Reduced with MPI in fedkd_node_share_finish, once every rank is
         * done: a barrier, waited for asleep, first, so that no rank spins
         * in the reduction while another still trains. */
        s->values = values;
        s->seconds = seconds;
        s->barrier_posted = MPI_Ibarrier(s->leaders, &s->barrier) == MPI_SUCCESS;
        return;
    }
    lock(h);
    uint64_t *sum = s->sum;
    /* Unsigned: wraps like MPI_SUM, without signed overflow. */
    for (size_t i = 0; i < s->count; i++) sum[i] += (uint64_t)values[i];
    if (seconds > h->slowest) h->slowest = seconds;
    pthread_mutex_unlock(&h->lock);
}

/* A leader's part: the nodes' sums and largest times to rank 0. */
static fedkd_status reduce_leaders(fedkd_node_share *s, const void *sum, double seconds,
                                   int64_t *out, double *slowest)
{
    int leader_rank;
    MPI_Comm_rank(s->leaders, &leader_rank);
    MPI_Request request;
    if (MPI_Ireduce(sum, leader_rank == 0 ? out : NULL, (int)s->count, MPI_INT64_T, MPI_SUM, 0,
                    s->leaders, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ireduce of the update sums failed");
    fedkd_status status = fedkd_comm_wait_active(&request, "the update reduction");
    double all = seconds;
    if (!status && MPI_Ireduce(&seconds, &all, 1, MPI_DOUBLE, MPI_MAX, 0, s->leaders,
                               &request) != MPI_SUCCESS)
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ireduce of the training times failed");
    if (!status) status = fedkd_comm_wait_active(&request, "the timing reduction");
    if (!status && leader_rank == 0) *slowest = all;
    return status;
}

fedkd_status fedkd_node_share_finish(fedkd_node_share *s, int64_t *out, double *slowest)
{
    node_header *h = s->shared;
    if (!h) {
        if (!s->barrier_posted)
            return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ibarrier failed at the end of local training");
        s->barrier_posted = 0;
        fedkd_status status = fedkd_comm_wait(&s->barrier, "the end of local training");
        return status ? status : reduce_leaders(s, s->values, s->seconds, out, slowest);
    }
    uint32_t round = atomic_load(&h->done);
    if (!s->is_leader) {
        /* The last one in wakes the leader; then all sleep until it is done. */
        if (atomic_fetch_add(&h->arrived, 1) + 1 == (uint32_t)s->node_size - 1)
            wake_all(&h->arrived);
        sleep_while_equal(&h->done, round);
        return FEDKD_OK;
    }
    uint32_t arrived;
    while ((arrived = atomic_load(&h->arrived)) < (uint32_t)s->node_size - 1)
        sleep_while_equal(&h->arrived, arrived);
    lock(h);
    double node_slowest = h->slowest;
    pthread_mutex_unlock(&h->lock);
    fedkd_status status = reduce_leaders(s, s->sum, node_slowest, out, slowest);
    /* Cleared before the others wake: none adds to the next round before. */
    memset(s->sum, 0, s->count * sizeof *s->sum);
    h->slowest = 0.0;
    atomic_store(&h->arrived, 0);
    atomic_store(&h->done, round + 1);
    wake_all(&h->done);
    return status;
}

void fedkd_node_share_close(fedkd_node_share *s)
{
    if (!s) return;
    if (s->leaders != MPI_COMM_NULL) MPI_Comm_free(&s->leaders);
    if (s->shared) munmap(s->shared, s->bytes);
    free(s);
}
