/* Small MPI helpers every layer above core uses: agreeing on a status
 * across the ranks of a communicator, waiting for a non-blocking collective
 * without spinning, and the stop signals a run honours at clean points. */
#ifndef FEDKD_CORE_COMM_H
#define FEDKD_CORE_COMM_H

#include <signal.h>

#include <mpi.h>

#include "fedkd/core/status.h"

/* Combines every rank's status: returns the worst one on all ranks, and
 * keeps the message on one rank only, the lowest that failed (rank 0 when
 * every rank failed alike, as with a config error all of them parsed), so
 * that a failure is told once. Waits without spinning: ranks that finished
 * early must not steal the core from ranks still working. */
fedkd_status fedkd_comm_agree(MPI_Comm comm, fedkd_status local);

/* Waits for a non-blocking collective while yielding the core: ranks on an
 * oversubscribed machine must not spin while others compute. `what` names
 * the collective in the message if MPI fails. */
fedkd_status fedkd_comm_wait(MPI_Request *request, const char *what);

/* The same for a collective during which no rank computes (a round's
 * broadcasts, its sums once every rank has trained): it tests without
 * sleeping, yielding the core between tests, for up to 20 ms, then waits
 * as fedkd_comm_wait. A message larger than a few fragments advances only
 * while the ranks on its path test: asleep between tests, they made a
 * 1.6 MB reduction between two ranks take 0.2 - 0.4 s. */
fedkd_status fedkd_comm_wait_active(MPI_Request *request, const char *what);

/* 1 when the latest agreement (fedkd_comm_agree or
 * fedkd_comm_note_agreed) ended in a failure that every rank of its
 * communicator saw. A run that returns a failure while this is 0 failed on
 * its own ranks only: peers may be waiting for it inside a collective. */
int fedkd_comm_failure_agreed(void);
/* Records the outcome of an agreement made by other means (a broadcast of
 * rank 0's status). */
void fedkd_comm_note_agreed(fedkd_status agreed);

/* After MPI_Init, before any run: every rank of MPI_COMM_WORLD (collective).
 * Also notes the time, for fedkd_comm_claim_start_time. */
fedkd_status fedkd_comm_setup(void);
/* Where a run's set-up time (summary.json `setup_seconds`) starts: the
 * first call in a process returns the fedkd_time_now() of fedkd_comm_setup
 * (just after MPI_Init), later calls the current time, so that a mode that
 * runs several federations charges the process start to the first alone. */
double fedkd_comm_claim_start_time(void);
/* Before MPI_Finalize on the normal way out. */
void fedkd_comm_teardown(void);

/* The one way out of a process for every rank (only main calls it): when
 * `status` is a failure that was not agreed, this rank may have peers
 * blocked in a collective it will never join. It then waits up to
 * grace_seconds for every rank to reach the exit on its own, and if they
 * do not, ends the whole job (MPI_Abort on MPI_COMM_WORLD with exit code
 * `code`), so that no rank hangs. Otherwise it returns at once; the caller
 * finalises MPI. */
void fedkd_comm_exit_check(fedkd_status status, int code, double grace_seconds);

/* Set by the SIGINT / SIGTERM / SIGUSR1 handler (SIGUSR1: SLURM's signal
 * before the time limit); runs stop at the next clean point, a federation
 * after writing a checkpoint of its finished rounds. */
extern volatile sig_atomic_t fedkd_stop_requested;
void fedkd_install_signal_handlers(void);

#endif
