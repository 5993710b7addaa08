/* Compute slots (src/core/slots.c) under MPI, all ranks on one node:
 *   - with a limit of 1 and of 2, no more ranks than that ever hold a slot at
 *     once: each rank holds one REPEATS times for HOLD_MS, records when it
 *     got and gave it back, and rank 0 sweeps every rank's intervals;
 *   - without a limit (-1) and with a limit as large as the node, ranks
 *     overlap (the check can fail: it shows that the limit is what
 *     serialised them above);
 *   - the automatic limit (0) is between 1 and the node's ranks.
 * Run with mpiexec -np 4 (at least 3 ranks): test_slots */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <mpi.h>

#include "fedkd/core/slots.h"
#include "../test_util.h"

enum { REPEATS = 4, HOLD_MS = 20, MAX_RANKS = 64 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void hold(void)
{
    struct timespec pause = {0, HOLD_MS * 1000000L};
    nanosleep(&pause, NULL);
}

static int compare_events(const void *a, const void *b)
{
    const double *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1]; /* releases (-1) before acquisitions (+1) */
}

/* Every rank holds a slot REPEATS times; rank 0 returns the most ranks
 * that held one at the same time (the others return 0). */
static int most_at_once(fedkd_slots *slots)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    double mine[2 * REPEATS];
    MPI_Barrier(MPI_COMM_WORLD);
    for (int r = 0; r < REPEATS; r++) {
        fedkd_slots_acquire(slots);
        mine[2 * r] = now();
        hold();
        mine[2 * r + 1] = now();
        fedkd_slots_release(slots);
    }
    static double all[2 * REPEATS * MAX_RANKS];
    MPI_Gather(mine, 2 * REPEATS, MPI_DOUBLE, all, 2 * REPEATS, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rank != 0) return 0;
    int n = 2 * REPEATS * size;
    static double events[2 * REPEATS * MAX_RANKS][2];
    for (int i = 0; i < n; i++) {
        events[i][0] = all[i];
        events[i][1] = i % 2 == 0 ? 1.0 : -1.0;
    }
    qsort(events, (size_t)n, sizeof events[0], compare_events);
    int inside = 0, most = 0;
    for (int i = 0; i < n; i++) {
        inside += (int)events[i][1];
        if (inside > most) most = inside;
    }
    return most;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 3 || size > MAX_RANKS) {
        if (rank == 0) fprintf(stderr, "test_slots: run with 3 to %d ranks\n", MAX_RANKS);
        MPI_Finalize();
        return 1;
    }

    for (int limit = 1; limit <= 2; limit++) {
        fedkd_slots *slots = fedkd_slots_open(MPI_COMM_WORLD, limit);
        CHECK(slots != NULL, "limit %d on %d ranks: no slots", limit, size);
        CHECK(fedkd_slots_limit(slots) == limit, "limit %d: reported %d", limit,
              fedkd_slots_limit(slots));
        int most = most_at_once(slots);
        if (rank == 0) {
            CHECK(most >= 1 && most <= limit, "limit %d: %d ranks held a slot at once", limit,
                  most);
            printf("limit %d: at most %d rank(s) at once\n", limit, most);
        }
        fedkd_slots_close(slots);
    }

    /* No limit, and a limit as large as the node: nothing is shared. */
    int unlimited[] = {-1, size};
    for (int i = 0; i < 2; i++) {
        fedkd_slots *slots = fedkd_slots_open(MPI_COMM_WORLD, unlimited[i]);
        CHECK(slots == NULL, "slots %d on %d ranks: expected no limit", unlimited[i], size);
        int most = most_at_once(slots);
        if (rank == 0) {
            CHECK(most > 1, "slots %d: the ranks never overlapped (%d at once)", unlimited[i],
                  most);
            printf("slots %d: up to %d ranks at once\n", unlimited[i], most);
        }
        fedkd_slots_close(slots);
    }

    /* Automatic: the node's CPUs, so between 1 and the ranks (NULL when the
     * node has at least as many CPUs as ranks). */
    fedkd_slots *slots = fedkd_slots_open(MPI_COMM_WORLD, 0);
    int limit = fedkd_slots_limit(slots);
    CHECK(slots == NULL || (limit >= 1 && limit < size), "automatic limit %d on %d ranks", limit,
          size);
    int most = most_at_once(slots);
    if (rank == 0) {
        CHECK(slots == NULL || most <= limit, "automatic limit %d: %d at once", limit, most);
        printf("automatic: limit %d, at most %d at once\n", limit, most);
    }
    fedkd_slots_close(slots);

    int failures = test_failures, total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    test_failures = total;
    return rank == 0 ? test_finish("test_slots") : total != 0;
}
