/* fedkd-sim: the command line.
 *
 *   mpirun -np P fedkd-sim [run] [CONFIG.json] [--config FILE] [--set key=value ...]
 *                          [--resume PATH|auto]
 *   mpirun -np P fedkd-sim partition [--config FILE] [--set key=value ...]
 *   fedkd-sim inspect FILE.h5
 *   fedkd-sim export [CONFIG.json] [--set run.dir=DIR] [--resume PATH|auto] --output MODEL.h5
 *
 * Only main decides to print an error and exit; every rank exits with the
 * same non-zero status when anything failed anywhere. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <mpi.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "fedkd/io/checkpoint.h"
#include "fedkd/config/config.h"
#include "fedkd/core/comm.h"
#include "fedkd/core/core.h"
#include "fedkd/core/hdf5_lazy.h"
#include "fedkd/experiments/experiments.h"
#include "fedkd/io/inspect.h"
#include "fedkd/nn/nn.h"
#include "fedkd/experiments/sweep.h"

enum { EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* How long a rank that failed on its own waits for its peers at the exit
 * before it ends the job for them (fedkd_comm_exit_check). */
#define EXIT_GRACE_SECONDS 5.0

typedef struct arguments arguments;

struct arguments {
    const char *command;
    const char *config_path;
    const char *file;       /* inspect: the file to inspect */
    const char *resume;     /* --resume PATH|auto */
    int start_over;         /* --start-over */
    int dry_run;            /* --dry-run */
    const char *output;     /* --output FILE */
    const char **overrides;
    int num_overrides;
    int print_config;
    int quiet;
    int help;
    int version;
};

/* A command of the command line: one row each, found by name. */
typedef struct command {
    const char *name;
    const char *usage;          /* for --help */
    const char *help;
    int loads_config;           /* 1: run gets the merged, validated config */
    fedkd_status (*run)(const arguments *args, const fedkd_config *config, int rank);
} command;


/* Rank 0 does the work of a file command; every rank exits with its status. */
static fedkd_status agree_with_rank0(fedkd_status status)
{
    int code = (int)status;
    if (MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Bcast failed");
    fedkd_comm_note_agreed((fedkd_status)code);
    return (fedkd_status)code;
}

static fedkd_status export_model(const fedkd_config *config, const arguments *args, int rank)
{
    fedkd_status status = FEDKD_OK;
    if (rank == 0) {
        char path[1024];
        int round = 0;
        if (args->resume && strcmp(args->resume, "auto") != 0) {
            snprintf(path, sizeof path, "%s", args->resume);
        } else {
            status = fedkd_checkpoint_find_latest(config->run.dir, path, sizeof path, &round);
            if (!status && round == 0)
                status = FEDKD_FAIL(FEDKD_ERR_IO,
                                    "export: no checkpoint in run directory %s (set run.dir, or "
                                    "name one with --resume PATH)",
                                    config->run.dir);
        }
        if (!status) status = fedkd_checkpoint_export(path, args->output);
        if (!status) fedkd_log_info("exported the global model of %s to %s", path, args->output);
    }
    return agree_with_rank0(status);
}

static fedkd_status command_inspect(const arguments *args, const fedkd_config *config, int rank)
{
    (void)config;
    /* Needs no config: the file carries its own. */
    fedkd_status status = rank == 0 ? fedkd_inspect_file(args->file, stdout) : FEDKD_OK;
    if (rank == 0) fflush(stdout);
    return agree_with_rank0(status);
}

static fedkd_status command_sweep(const arguments *args, const fedkd_config *config, int rank)
{
    (void)config;
    (void)rank;
    /* The grid names its base config; --set applies to every point. */
    return fedkd_sweep_run(args->config_path, args->overrides, args->num_overrides,
                           MPI_COMM_WORLD);
}

static fedkd_status command_partition(const arguments *args, const fedkd_config *config, int rank)
{
    (void)args;
    (void)rank;
    return fedkd_partition_report(config, MPI_COMM_WORLD);
}

static fedkd_status command_export(const arguments *args, const fedkd_config *config, int rank)
{
    return export_model(config, args, rank);
}

/* The configured mode, looked up in the mode table. */
static fedkd_status command_run(const arguments *args, const fedkd_config *config, int rank)
{
    /* Test hook: this rank fails on its own before the run's first
     * collective, as a rank whose local set-up breaks would (tests/app). */
    const char *alone = getenv("FEDKD_TEST_FAIL_ALONE_ON_RANK");
    if (alone && atoi(alone) == rank)
        return FEDKD_FAIL(FEDKD_ERR_IO, "failed alone on rank %d (injected by "
                                        "FEDKD_TEST_FAIL_ALONE_ON_RANK)", rank);
    fedkd_run_result result;
    fedkd_run_options options = {.resume = args->resume, .start_over = args->start_over,
                                 .dry_run = args->dry_run};
    fedkd_status status = fedkd_run_with_options(config, MPI_COMM_WORLD, &options, &result);
    free(result.final_params);
    return status;
}

static const command commands[] = {
    {"run", "run", "run the configured job (default): the mode the config key `mode` names", 1,
     command_run},
    {"partition", "partition", "print per-client sample counts and class histograms, no training",
     1, command_partition},
    {"sweep", "sweep GRID", "run a grid search: every combination of the grid's values, in\n"
     "               groups of group_size processes; results in <output>/results.csv\n"
     "               and results.json; run again to continue (configs/README.md)", 0,
     command_sweep},
    {"inspect", "inspect FILE", "print what a checkpoint or model file holds: format version,\n"
     "               round, config summary, model and parameter count, clients,\n"
     "               partition, the last rounds' metrics", 0, command_inspect},
    {"export", "export", "--output MODEL.h5 [--resume PATH|auto]: write the global model of a\n"
     "               checkpoint (by default the newest in run.dir) to a model file", 1,
     command_export},
    {NULL, NULL, NULL, 0, NULL},
};

static const command *find_command(const char *name)
{
    for (int i = 0; commands[i].name; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void print_help(void)
{
    printf(
        "fedkd-sim %s: federated and collaborative learning with knowledge distillation\n"
        "\n"
        "usage: mpirun -np P fedkd-sim [COMMAND] [CONFIG.json] [OPTIONS]\n"
        "\n"
        "Rank 0 is the server; ranks 1..P-1 host the clients (clients.count of them,\n"
        "round-robin). With P = 1 one process plays both parts.\n"
        "\n"
        "commands:\n",
        FEDKD_VERSION);
    for (int i = 0; commands[i].name; i++) printf("  %-12s %s\n", commands[i].usage, commands[i].help);
    printf("\nmodes (config key `mode`, run by the command run):\n");
    for (int i = 0; fedkd_modes[i]; i++)
        printf("  %-12s %s\n", fedkd_modes[i]->name, fedkd_modes[i]->summary);
    printf(
        "\n"
        "options:\n"
        "  --config FILE       JSON config merged over the built-in default\n"
        "                      (configs/default.json); a bare FILE argument means the same\n"
        "  --set KEY=VALUE     override one key, e.g. --set local.lr=0.1 --set rounds=5;\n"
        "                      VALUE is JSON when it parses as JSON, else a string\n"
        "  --resume PATH|auto  continue a run from a checkpoint: PATH, or with auto the\n"
        "                      newest complete one in run.dir (a fresh start if none).\n"
        "                      The result is bit-identical to an uninterrupted run at any\n"
        "                      -np; only rounds, run.dir, run.compute_slots,\n"
        "                      data.cache_dir, checkpoint.* and target_accuracy may differ\n"
        "                      from the checkpoint's config\n"
        "  --start-over        a fresh run into a run.dir that holds checkpoints deletes\n"
        "                      them and starts at round 1 (without it, it is refused)\n"
        "  --dry-run           load the data, print every rank's memory estimate (models,\n"
        "                      data, buffers) against its node's limit, and stop before\n"
        "                      training (mode federated)\n"
        "  --output FILE       export: the model file to write\n"
        "  --print-config      print the merged config as JSON and exit\n"
        "  --quiet             rank 0 prints no progress lines\n"
        "  --help, -h          this text and the list of config keys\n"
        "  --version           the version\n"
        "\n"
        "outputs (in run.dir): rounds.jsonl, rounds.csv, partition.json, summary.json,\n"
        "  checkpoint-<round>.h5 every checkpoint.every rounds (0: only at the end) and\n"
        "  at the end; the newest checkpoint.keep are kept\n"
        "exit status: 0 done, 1 error, 2 usage error, 130 interrupted (SIGINT, SIGTERM,\n"
        "  SIGUSR1; a federation first writes a checkpoint: --resume auto continues it)\n"
        "\n"
        "config keys:\n");
    fedkd_config_print_keys(stdout);
}


/* Returns 0, or EXIT_USAGE with the message recorded. */
static int parse_arguments(int argc, char **argv, arguments *args)
{
    memset(args, 0, sizeof *args);
    args->command = "run";
    args->overrides = calloc((size_t)argc + 1, sizeof *args->overrides);
    if (!args->overrides) {
        FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory parsing arguments");
        return EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            args->help = 1;
        } else if (strcmp(a, "--version") == 0) {
            args->version = 1;
        } else if (strcmp(a, "--quiet") == 0) {
            args->quiet = 1;
        } else if (strcmp(a, "--print-config") == 0) {
            args->print_config = 1;
        } else if (strcmp(a, "--start-over") == 0) {
            args->start_over = 1;
        } else if (strcmp(a, "--dry-run") == 0) {
            args->dry_run = 1;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--set") == 0 ||
                   strcmp(a, "--resume") == 0 || strcmp(a, "--output") == 0) {
            if (i + 1 >= argc) {
                FEDKD_FAIL(FEDKD_ERR_INVALID, "option %s needs a value; see fedkd-sim --help", a);
                return EXIT_USAGE;
            }
            if (a[2] == 'c') args->config_path = argv[++i];
            else if (a[2] == 'r') args->resume = argv[++i];
            else if (a[2] == 'o') args->output = argv[++i];
            else args->overrides[args->num_overrides++] = argv[++i];
        } else if (strncmp(a, "--resume=", 9) == 0) {
            args->resume = a + 9;
        } else if (strncmp(a, "--output=", 9) == 0) {
            args->output = a + 9;
        } else if (strncmp(a, "--set=", 6) == 0) {
            args->overrides[args->num_overrides++] = a + 6;
        } else if (strncmp(a, "--config=", 9) == 0) {
            args->config_path = a + 9;
        } else if (a[0] == '-') {
            FEDKD_FAIL(FEDKD_ERR_INVALID, "unknown option `%s`; see fedkd-sim --help", a);
            return EXIT_USAGE;
        } else if (i == 1 && find_command(a)) {
            args->command = a;
        } else if (strcmp(args->command, "inspect") == 0 && !args->file) {
            args->file = a;
        } else if (!args->config_path) {
            args->config_path = a;
        } else {
            FEDKD_FAIL(FEDKD_ERR_INVALID,
                       "unexpected argument `%s` (the config is already %s); see fedkd-sim --help",
                       a, args->config_path);
            return EXIT_USAGE;
        }
    }
    int is_run = strcmp(args->command, "run") == 0, is_export = strcmp(args->command, "export") == 0;
    if (strcmp(args->command, "inspect") == 0 && !args->file && !args->help) {
        FEDKD_FAIL(FEDKD_ERR_INVALID, "inspect needs a file: fedkd-sim inspect FILE.h5");
        return EXIT_USAGE;
    }
    if (args->resume && !args->resume[0]) {
        FEDKD_FAIL(FEDKD_ERR_INVALID, "--resume needs a checkpoint path or `auto`");
        return EXIT_USAGE;
    }
    if (args->resume && !is_run && !is_export) {
        FEDKD_FAIL(FEDKD_ERR_INVALID, "--resume applies to run and export, not to %s",
                   args->command);
        return EXIT_USAGE;
    }
    if (args->dry_run && !is_run) {
        FEDKD_FAIL(FEDKD_ERR_INVALID, "--dry-run applies to run only");
        return EXIT_USAGE;
    }
    if (args->start_over && (!is_run || args->resume)) {
        FEDKD_FAIL(FEDKD_ERR_INVALID, "--start-over applies to a fresh run (no --resume)");
        return EXIT_USAGE;
    }
    if (is_export != (args->output != NULL) && !args->help) {
        FEDKD_FAIL(FEDKD_ERR_INVALID, is_export ? "export needs --output MODEL.h5"
                                                : "--output applies to export only");
        return EXIT_USAGE;
    }
    return 0;
}

static int exit_code(fedkd_status status)
{
    if (status == FEDKD_OK) return 0;
    if (status == FEDKD_ERR_INTERRUPTED) return EXIT_INTERRUPTED;
    return 1;
}

/* Collective: rank 0 warns when the ranks' OpenBLAS kernel families
 * differ (nodes of mixed CPUs). The dense layers round differently under
 * another, so every mode's results then depend on which rank computed
 * what. Once per job; the job goes on. */
static fedkd_status check_blas_cores(int rank)
{
    const char *core = fedkd_sgemm_core();
    uint64_t mine = fedkd_checksum(core, strlen(core));
    uint64_t both[2] = {mine, ~mine}, least[2] = {0, 0};
    MPI_Request request;
    if (MPI_Iallreduce(both, least, 2, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD, &request) !=
        MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iallreduce of the ranks' OpenBLAS kernels failed");
    fedkd_status status = fedkd_comm_wait(&request, "the ranks' OpenBLAS kernels");
    if (!status && rank == 0 && least[0] != ~least[1])
        fedkd_log_warn("the ranks use different OpenBLAS kernel families (rank 0: %s), which "
                       "round differently: results depend on which rank computes what; set "
                       "OPENBLAS_CORETYPE to one family every node supports", core);
    return status;
}

/* Under LeakSanitizer (the sanitizer build), what Open MPI allocates inside
 * MPI_Init and MPI_Finalize is not tracked: thousands of blocks it keeps for
 * the life of the process, each of which LeakSanitizer matched against
 * tests/lsan.supp at exit, about 2 s per rank. None of ours are made inside
 * these calls, and ours stay checked. */
#if defined(__SANITIZE_ADDRESS__)
static void lsan_ignore(int on)
{
    if (on)
        __lsan_disable();
    else
        __lsan_enable();
}
#else
static void lsan_ignore(int on) { (void)on; }
#endif

int main(int argc, char **argv)
{
    /* hwloc, which Open MPI asks for the node's topology in every rank,
     * loads its OpenGL, OpenCL and libxml2 plugins unless told not to: X11,
     * libOpenCL, libxml2 and ICU mapped into each rank, 2.7 MiB of resident
     * memory a rank on Debian 12, for GPUs and an XML parser the simulator
     * never uses (hwloc reads its XML with its own parser then). A value
     * the user set is kept. */
    setenv("HWLOC_PLUGINS_BLACKLIST", "hwloc_gl,hwloc_opencl,hwloc_xml_libxml", 0);
    /* Open MPI's nonblocking reduce mallocs about twice its message every
     * round (3.2 MB for the mlp's sums) and frees it at the end. glibc
     * maps such a block on its own the first time, then raises its mapping
     * threshold and takes the next one from a heap that must grow: each
     * of rounds 1 and 2 faulted the pages in anew (0.1 s more for round 2
     * of an mlp run at -np 16). A fixed threshold, and a heap top kept up
     * to 16 MiB, fault them in once. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    lsan_ignore(1);
    int init_failed = MPI_Init(&argc, &argv) != MPI_SUCCESS;
    lsan_ignore(0);
    if (init_failed) {
        fprintf(stderr, "fedkd-sim: error: MPI_Init failed\n");
        return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    fedkd_log_set_rank(rank, size);
    /* One BLAS thread per rank unless the user set OPENBLAS_NUM_THREADS:
     * ranks already fill the cores. */
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    fedkd_install_signal_handlers();
    if (fedkd_comm_setup() != FEDKD_OK || check_blas_cores(rank) != FEDKD_OK) {
        fprintf(stderr, "fedkd-sim: error: %s\n", fedkd_error_message());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    arguments args;
    fedkd_config config = {0};
    fedkd_status status = FEDKD_OK;
    int code = parse_arguments(argc, argv, &args);
    if (code) {
        if (rank == 0) fedkd_log_error("%s", fedkd_error_message());
        goto finish;
    }
    if (args.help || args.version) {
        if (rank == 0) {
            if (args.help) print_help();
            else printf("fedkd-sim %s\n", FEDKD_VERSION);
        }
        goto finish;
    }
    fedkd_log_set_quiet(args.quiet);

    const command *cmd = find_command(args.command);
    if (cmd->run == command_sweep && !args.config_path) {
        if (rank == 0) fedkd_log_error("sweep needs a grid file: fedkd-sim sweep GRID.json");
        code = EXIT_USAGE;
        goto finish;
    }
    if (cmd->loads_config) {
        /* Every rank parses the same config; a config error is the same
         * everywhere, so rank 0 alone reports it. */
        status = fedkd_config_load(&config, args.config_path, args.overrides, args.num_overrides);
        /* Every rank parsed the same text: a failure is the same everywhere. */
        fedkd_comm_note_agreed(status);
        if (status) {
            if (rank == 0) fedkd_log_error("%s", fedkd_error_message());
            code = exit_code(status);
            goto finish;
        }
        if (args.print_config) {
            if (rank == 0) {
                char *text = fedkd_config_to_string(&config);
                if (text) printf("%s\n", text);
                free(text);
            }
            goto finish;
        }
    }
    status = cmd->run(&args, &config, rank);
    if (status && fedkd_error_message()[0]) fedkd_log_error("%s", fedkd_error_message());
    code = exit_code(status);

finish:
    /* For tests: whether this rank loaded HDF5 (src/core/hdf5_lazy.c). */
    if (getenv("FEDKD_TEST_REPORT_HDF5"))
        fprintf(stderr, "rank %d: HDF5 %s\n", rank, fedkd_hdf5_loaded() ? "loaded" : "not loaded");
    fedkd_config_free(&config);
    free(args.overrides);
    /* A failure this rank met alone may leave peers waiting in a collective:
     * end the job rather than hang (every rank exits non-zero). */
    fedkd_comm_exit_check(status, code ? code : 1, EXIT_GRACE_SECONDS);
    fedkd_comm_teardown();
    lsan_ignore(1);
    MPI_Finalize();
    lsan_ignore(0);
    return code;
}
