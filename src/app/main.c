/* fedkd-sim: the command line.
 *
 *   mpirun -np P fedkd-sim [run] [CONFIG.json] [--config FILE] [--set key=value ...]
 *   mpirun -np P fedkd-sim partition [--config FILE] [--set key=value ...]
 *
 * Only main decides to print an error and exit; every rank exits with the
 * same non-zero status when anything failed anywhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <mpi.h>

#include "fedkd/config.h"
#include "fedkd/core.h"
#include "fedkd/fl.h"

enum { EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

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
        "commands:\n"
        "  run          run the configured job (default): a federation (mode=federated)\n"
        "               or centralized training (mode=centralized)\n"
        "  partition    print per-client sample counts and class histograms, no training\n"
        "\n"
        "options:\n"
        "  --config FILE       JSON config merged over the built-in default\n"
        "                      (configs/default.json); a bare FILE argument means the same\n"
        "  --set KEY=VALUE     override one key, e.g. --set local.lr=0.1 --set rounds=5;\n"
        "                      VALUE is JSON when it parses as JSON, else a string\n"
        "  --print-config      print the merged config as JSON and exit\n"
        "  --quiet             rank 0 prints no progress lines\n"
        "  --help, -h          this text and the list of config keys\n"
        "  --version           the version\n"
        "\n"
        "outputs (in run.dir): rounds.jsonl, rounds.csv, partition.json, summary.json\n"
        "exit status: 0 done, 1 error, 2 usage error, 130 interrupted (SIGINT/SIGTERM)\n"
        "\n"
        "config keys:\n",
        FEDKD_VERSION);
    fedkd_config_print_keys(stdout);
}

typedef struct arguments {
    const char *command;
    const char *config_path;
    const char **overrides;
    int num_overrides;
    int print_config;
    int quiet;
    int help;
    int version;
} arguments;

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
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--set") == 0) {
            if (i + 1 >= argc) {
                FEDKD_FAIL(FEDKD_ERR_INVALID, "option %s needs a value; see fedkd-sim --help", a);
                return EXIT_USAGE;
            }
            if (a[2] == 'c') args->config_path = argv[++i];
            else args->overrides[args->num_overrides++] = argv[++i];
        } else if (strncmp(a, "--set=", 6) == 0) {
            args->overrides[args->num_overrides++] = a + 6;
        } else if (strncmp(a, "--config=", 9) == 0) {
            args->config_path = a + 9;
        } else if (a[0] == '-') {
            FEDKD_FAIL(FEDKD_ERR_INVALID, "unknown option `%s`; see fedkd-sim --help", a);
            return EXIT_USAGE;
        } else if (i == 1 && (strcmp(a, "run") == 0 || strcmp(a, "partition") == 0)) {
            args->command = a;
        } else if (!args->config_path) {
            args->config_path = a;
        } else {
            FEDKD_FAIL(FEDKD_ERR_INVALID,
                       "unexpected argument `%s` (the config is already %s); see fedkd-sim --help",
                       a, args->config_path);
            return EXIT_USAGE;
        }
    }
    return 0;
}

static int exit_code(fedkd_status status)
{
    if (status == FEDKD_OK) return 0;
    if (status == FEDKD_ERR_INTERRUPTED) return EXIT_INTERRUPTED;
    return 1;
}

int main(int argc, char **argv)
{
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
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

    /* Every rank parses the same config; a config error is the same
     * everywhere, so rank 0 alone reports it. */
    status = fedkd_config_load(&config, args.config_path, args.overrides, args.num_overrides);
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

    if (strcmp(args.command, "partition") == 0) {
        status = fedkd_partition_report(&config, MPI_COMM_WORLD);
    } else {
        fedkd_run_result result;
        status = fedkd_run(&config, MPI_COMM_WORLD, &result);
        free(result.final_params);
    }
    if (status && fedkd_error_message()[0]) fedkd_log_error("%s", fedkd_error_message());
    code = exit_code(status);

finish:
    fedkd_config_free(&config);
    free(args.overrides);
    MPI_Finalize();
    return code;
}
