/* Pieces shared by the federated and centralized runners. */
#ifndef FEDKD_FL_PRIVATE_H
#define FEDKD_FL_PRIVATE_H

#include "fedkd/clientset.h"
#include "fedkd/fl.h"
#include "fedkd/model_json.h"
#include "fedkd/partition.h"
#include "fedkd/runlog.h"
#include "fedkd/source.h"

/* Combines every rank's status: returns the worst one on all ranks. Keeps
 * the local message only where it should be printed: on the ranks that
 * failed, or on rank 0 alone when every rank failed the same way. */
fedkd_status fl_agree(MPI_Comm comm, fedkd_status local);

/* Waits for a non-blocking collective while yielding the core: ranks on an
 * oversubscribed machine must not spin while others compute. */
fedkd_status fl_wait(MPI_Request *request, const char *what);

fedkd_optimizer_settings fl_optimizer_settings(const fedkd_config *config);
/* FEDKD_CLIENTSET_PUBLIC when the run's mode or algorithm uses a public
 * set, else 0: the same on every rank. */
unsigned fl_data_flags(const fedkd_config *config);
fedkd_status fl_model_spec(const fedkd_config *config, fedkd_shape shape, int num_classes,
                           fedkd_model_spec *spec);

/* Rank 0: summary.json from the result and the config. */
fedkd_status fl_write_summary(const fedkd_config *config, const char *status_text,
                              const fedkd_run_result *result, int num_params_known);
/* The same with the members of `extra` (an object, may be NULL) added
 * after the outcome fields: a mode's own outcomes, which sweeps turn into
 * columns like the others. */
fedkd_status fl_write_summary_extra(const fedkd_config *config, const char *status_text,
                                    const fedkd_run_result *result, int num_params_known,
                                    const cJSON *extra);

/* One run per run.dir (src/fl/run_lock.c): rank 0 locks run.dir/run.lock
 * for the run's life, writing its host and pid into it; a second run into
 * the directory is refused on every rank, naming the holder. *fd is -1 on
 * the other ranks and after a failure. */
fedkd_status fl_run_lock_acquire(const fedkd_config *config, MPI_Comm comm, int *fd);
void fl_run_lock_release(int *fd);

/* Rank 0's progress line. */
void fl_print_progress(const fedkd_round_metrics *m, int total_rounds, double elapsed);

fedkd_status fedkd_run_centralized(const fedkd_config *config, MPI_Comm comm,
                                   fedkd_run_result *result);
fedkd_status fedkd_run_federated(const fedkd_config *config, MPI_Comm comm,
                                 const fedkd_run_options *options, fedkd_run_result *result);

#endif
