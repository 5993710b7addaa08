/* Small MPI helpers every layer above core uses: agreeing on a status
 * across the ranks of a communicator, waiting for a non-blocking collective
 * without spinning, and the stop signals a run honours at clean points. */
#ifndef FEDKD_CORE_COMM_H
#define FEDKD_CORE_COMM_H

#include <signal.h>

#include <mpi.h>

#include "fedkd/core/status.h"

/* Combines every rank's status: returns the worst one on all ranks. Keeps
 * the local message only where it should be printed: on the ranks that
 * failed, or on rank 0 alone when every rank failed the same way. */
fedkd_status fedkd_comm_agree(MPI_Comm comm, fedkd_status local);

/* fedkd_comm_agree's contract, but waiting without spinning (ranks that
 * finished early must not steal the core from ranks still training), and
 * one rank speaks: the lowest one that failed. */
fedkd_status fedkd_comm_agree_waiting(MPI_Comm comm, fedkd_status local);

/* Waits for a non-blocking collective while yielding the core: ranks on an
 * oversubscribed machine must not spin while others compute. `what` names
 * the collective in the message if MPI fails. */
fedkd_status fedkd_comm_wait(MPI_Request *request, const char *what);

/* Set by the SIGINT / SIGTERM handler; runs stop at the next clean point. */
extern volatile sig_atomic_t fedkd_stop_requested;
void fedkd_install_signal_handlers(void);

#endif
