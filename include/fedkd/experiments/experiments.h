/* The modes built on the federation, in one table found by name
 * (config key `mode`): a mode is a run function and one line of help. The
 * command line (src/app/main.c) looks the configured mode up here, and
 * --help lists the table. */
#ifndef FEDKD_EXPERIMENTS_H
#define FEDKD_EXPERIMENTS_H

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/fl/fl.h"

typedef struct fedkd_mode {
    const char *name;
    const char *summary;       /* one line for --help */
    /* 1: the mode writes checkpoints and continues with --resume. */
    int resumable;
    /* 1: --dry-run estimates the mode's memory per rank without training. */
    int dry_runs;
    /* When the mode holds the public rows out of the partitions it makes
     * (FEDKD_CLIENTSET_PUBLIC): a mask of FEDKD_MODE_PUBLIC_* (0: never). */
    int public_set;
    fedkd_status (*run)(const fedkd_config *config, MPI_Comm comm,
                        const fedkd_run_options *options, fedkd_run_result *result);
} fedkd_mode;

enum {
    FEDKD_MODE_PUBLIC_ALWAYS = 1,       /* every run (kd-start) */
    FEDKD_MODE_PUBLIC_IF_ALGORITHM = 2, /* when `algorithm` uses a public set */
    FEDKD_MODE_PUBLIC_IF_KD = 4,        /* when kd.transfer or kd.validation is public */
};

/* NULL-terminated: kd-start, federated, centralized, pretrain, kd-study. */
extern const fedkd_mode *const fedkd_modes[];
/* Fails with "config key `mode`: unknown mode `x`; expected ...". */
fedkd_status fedkd_mode_find(const char *name, const fedkd_mode **out);
/* The client-set flags of the config's mode and algorithm; the same on
 * every rank (0 for an unknown mode or algorithm: reported where the run
 * looks them up). */
unsigned fedkd_mode_data_flags(const fedkd_config *config);

/* Runs config->mode on `comm`; options (a resume) may be NULL. Every rank
 * returns the same status; only the rank where an error arose has its
 * message recorded (rank 0 too if every rank failed the same way). */
fedkd_status fedkd_run_with_options(const fedkd_config *config, MPI_Comm comm,
                                    const fedkd_run_options *options, fedkd_run_result *result);
/* fedkd_run_with_options without options. */
fedkd_status fedkd_run(const fedkd_config *config, MPI_Comm comm, fedkd_run_result *result);

/* `fedkd-sim partition`: rank 0 prints per-client sizes and histograms. */
fedkd_status fedkd_partition_report(const fedkd_config *config, MPI_Comm comm);

/* `centralized`: one model on the whole training set on rank 0 (one round
 * = local.epochs epochs), the baseline a federation is compared with. */
fedkd_status fedkd_run_centralized(const fedkd_config *config, MPI_Comm comm,
                                   fedkd_run_result *result);

/* ---- the modes' runners ---------------------------------------------------
 * `pretrain`: every client trains its own model on its own partition on its
 * host rank (fedkd_client_host_rank) for pretrain.epochs epochs and saves
 * <pretrain.dir>/client-<id>.h5 (pretrain.dir "" means <run.dir>/pretrained).
 * A file whose metadata fingerprint matches the run's (data rows, labels,
 * features, model, seed, epochs, optimizer) is reused; a file without a
 * fingerprint (made elsewhere in the documented layout) is imported as is;
 * a file with another fingerprint is retrained and overwritten, with a
 * warning. rank 0 writes run.dir/pretrain.json.
 *
 * `kd-study`: pretrain (or reuse), then every (student, teachers) pairing of
 * kd.pairs x every method of kd.methods; rank 0 writes run.dir/kd_results.csv
 * and .json (one row per run) and kd_summary.csv and .json (per method: mean
 * and standard deviation of the gain). Ranks hosting clients load the test
 * set to score their students before and after. options (may be NULL)
 * carry the client-set flags of the mode (fedkd_mode_data_flags); neither
 * mode resumes. */
fedkd_status fedkd_run_pretrain(const fedkd_config *config, MPI_Comm comm,
                                const fedkd_run_options *options, fedkd_run_result *result);
fedkd_status fedkd_run_kd_study(const fedkd_config *config, MPI_Comm comm,
                                const fedkd_run_options *options, fedkd_run_result *result);

/* `kd-start`, the KD-consolidated start (../shared/METHODS.md): with the
 * public set held out of the partition, pretrain (or reuse) every client's
 * model; consolidate them twice, by the sample-weighted average of their
 * weights and by distilling the mean of their softened predictions on the
 * public set into a fresh student on rank 0 (only logits travel; a = 1,
 * kd.temperature, kd.epochs); then run config->algorithm (fedavg or fedprox)
 * three times on the same partition, from the seeded initialisation, the
 * average and the student, in run.dir/<algorithm>-random, -average and
 * -kd. rank 0 writes run.dir/kd_start.json and .csv (per start:
 * rounds and bytes to target_accuracy, consolidation bytes, accuracies,
 * reduction against the random start) and summary.json (the KD start's
 * outcome plus per-start fields). options->resume may be NULL, "" or
 * "auto": sub-runs whose summary says completed with the same config are
 * kept, the others continue from their newest checkpoint. The result is
 * the KD start's federation, its bytes including the logits. */
fedkd_status fedkd_run_kd_start(const fedkd_config *config, MPI_Comm comm,
                                const fedkd_run_options *options, fedkd_run_result *result);

#endif
