/* Status agreement, idle waits and stop signals (include/fedkd/core/comm.h). */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "fedkd/core/comm.h"
#include "fedkd/core/core.h"

volatile sig_atomic_t fedkd_stop_requested = 0;

static int failure_agreed = 0;
/* A copy of MPI_COMM_WORLD for the exit barrier alone: peers blocked in a
 * collective of the world must not have it matched against the barrier. */
static MPI_Comm exit_comm = MPI_COMM_NULL;
/* fedkd_time_now() at fedkd_comm_setup; < 0 once claimed (or never set). */
static double setup_time = -1.0;

fedkd_status fedkd_comm_setup(void)
{
    if (exit_comm != MPI_COMM_NULL) return FEDKD_OK;
    setup_time = fedkd_time_now();
    if (MPI_Comm_dup(MPI_COMM_WORLD, &exit_comm) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Comm_dup of MPI_COMM_WORLD failed");
    return FEDKD_OK;
}

double fedkd_comm_claim_start_time(void)
{
    double start = setup_time >= 0.0 ? setup_time : fedkd_time_now();
    setup_time = -1.0;
    return start;
}

void fedkd_comm_teardown(void)
{
    if (exit_comm != MPI_COMM_NULL) MPI_Comm_free(&exit_comm);
}

int fedkd_comm_failure_agreed(void) { return failure_agreed; }

void fedkd_comm_note_agreed(fedkd_status agreed) { failure_agreed = agreed != FEDKD_OK; }

static void on_stop_signal(int signal_number)
{
    fedkd_stop_requested = signal_number;
}

void fedkd_install_signal_handlers(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    /* SLURM's warning before a time limit (sbatch --signal=B:USR1@120,
     * forwarded to every rank by srun and mpirun): stop as for SIGTERM. */
    sigaction(SIGUSR1, &action, NULL);
}

fedkd_status fedkd_comm_agree(MPI_Comm comm, fedkd_status local)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    /* {worst status, -(lowest failing rank)} in one reduction. */
    int mine[2] = {(int)local, local ? -rank : INT_MIN};
    int all[2] = {0, 0};
    MPI_Request request;
    if (MPI_Iallreduce(mine, all, 2, MPI_INT, MPI_MAX, comm, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iallreduce failed while checking the ranks' status");
    fedkd_status waited = fedkd_comm_wait(&request, "the ranks' status check");
    if (waited) return waited;
    fedkd_comm_note_agreed((fedkd_status)all[0]);
    if (all[0] == FEDKD_OK) return FEDKD_OK;
    /* One rank speaks: the lowest one that failed (rank 0 when every rank
     * failed alike, as with a config error all of them parsed). */
    if (rank != -all[1]) fedkd_error_clear();
    return (fedkd_status)all[0];
}

/* Tests that give the core away (sched_yield) before a wait starts to
 * sleep: a collective's tree advances only when each rank on its path
 * tests, and a rank asleep for up to 1 ms held up every hop through it. */
#define WAIT_YIELDS 64
#define ACTIVE_WAIT_SECONDS 0.02

static fedkd_status wait_request(MPI_Request *request, const char *what, double active_seconds)
{
    /* Yields first: a short collective is seen at once, and ranks that
     * compute lose only the yields. Then sleeps from 0.05 ms, doubling to
     * 1 ms: a rank waiting out another's long computation wakes about a
     * thousand times a second, not ten thousand (on an oversubscribed
     * machine each wake-up, with its MPI_Test, is taken from a rank that
     * computes). */
    double active_until = active_seconds > 0.0 ? fedkd_time_now() + active_seconds : 0.0;
    struct timespec pause = {0, 50000};
    for (int tries = 0;; tries++) {
        int done = 0;
        if (MPI_Test(request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed during %s", what);
        if (done) return FEDKD_OK;
        /* (The clock is read once per 64 tests.) */
        if (active_until > 0.0 && (tries & 63) == 0 && fedkd_time_now() >= active_until)
            active_until = 0.0;
        if (tries < WAIT_YIELDS || active_until > 0.0) {
            sched_yield();
            continue;
        }
        nanosleep(&pause, NULL);
        pause.tv_nsec = pause.tv_nsec >= 500000 ? 1000000 : 2 * pause.tv_nsec;
    }
}

fedkd_status fedkd_comm_wait(MPI_Request *request, const char *what)
{
    return wait_request(request, what, 0.0);
}

fedkd_status fedkd_comm_wait_active(MPI_Request *request, const char *what)
{
    return wait_request(request, what, ACTIVE_WAIT_SECONDS);
}

void fedkd_comm_exit_check(fedkd_status status, int code, double grace_seconds)
{
    if (status == FEDKD_OK || failure_agreed) return;
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size == 1) return;
    /* Peers that failed alike (each on its own) come here too; then the
     * barrier completes and the job ends normally. Peers blocked in a
     * collective never come: end the job rather than leave them waiting. */
    MPI_Request request;
    if (exit_comm == MPI_COMM_NULL || MPI_Ibarrier(exit_comm, &request) != MPI_SUCCESS)
        MPI_Abort(MPI_COMM_WORLD, code);
    struct timespec pause = {0, 1000000}; /* 1 ms */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int done = 0;
        if (MPI_Test(&request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done) {
            if (done) return;
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - start.tv_sec) + 1e-9 * (double)(now.tv_nsec - start.tv_nsec);
        if (waited >= grace_seconds) break;
        nanosleep(&pause, NULL);
    }
    MPI_Abort(MPI_COMM_WORLD, code);
}
