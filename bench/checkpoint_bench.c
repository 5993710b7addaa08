/* Checkpoint write / read time and file size (bench/README.md, "Checkpoints").
 *
 *   mpiexec -np P fedkd-bench-checkpoint --model mlp|cnn --clients N
 *       [--state none|model] [--reps R] [--rounds K] --dir DIR
 *
 * Builds what a federation on Fashion-MNIST-shaped data would checkpoint
 * after K rounds: the global model, the partition of 60000 samples among N
 * clients (Dirichlet 0.5), K rounds of metrics and, with --state model, one
 * model-sized state row per client (what FedMD / DS-FL keep; FedAvg keeps
 * none), written by the rank hosting each client. Then times R writes
 * (collective, including the fsync and rename; the slowest rank counts) and
 * R reads (rank 0 reads and validates everything but the client rows; every
 * rank reads its clients' rows; the slowest counts), and prints one line:
 *   model clients state ranks bytes write_s read_s rows_read_s
 * with the medians of the R repetitions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mpi.h>

#include "fedkd/fl/fl.h"
#include "fedkd/io/checkpoint.h"
#include "fedkd/config/config.h"
#include "fedkd/core/core.h"
#include "fedkd/nn/model_json.h"
#include "fedkd/core/rng.h"

enum { SAMPLES = 60000, CLASSES = 10, MAX_REPS = 50 };

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n)
{
    qsort(values, (size_t)n, sizeof *values, compare_double);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

static double slowest(double seconds)
{
    double worst = 0.0;
    MPI_Allreduce(&seconds, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

static void usage_exit(int rank)
{
    if (rank == 0)
        fprintf(stderr, "usage: fedkd-bench-checkpoint --model mlp|cnn --clients N "
                        "[--state none|model] [--reps R] [--rounds K] --dir DIR\n");
    MPI_Finalize();
    exit(2);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *model = "mlp", *state = "none", *dir = NULL;
    int clients = 16, reps = 5, rounds = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--model") == 0) model = argv[i + 1];
        else if (strcmp(argv[i], "--clients") == 0) clients = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--state") == 0) state = argv[i + 1];
        else if (strcmp(argv[i], "--reps") == 0) reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0) rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--dir") == 0) dir = argv[i + 1];
        else usage_exit(rank);
    }
    if (!dir || clients < 1 || reps < 1 || reps > MAX_REPS || rounds < 1 ||
        (strcmp(state, "none") != 0 && strcmp(state, "model") != 0))
        usage_exit(rank);
    if (rank == 0) mkdir(dir, 0777);

    char set_model[64], set_clients[64];
    snprintf(set_model, sizeof set_model, "model=%s", model);
    snprintf(set_clients, sizeof set_clients, "clients.count=%d", clients);
    const char *sets[] = {set_model, set_clients};
    fedkd_config config = {0};
    fedkd_model_spec spec;
    fedkd_shape input = {1, 28, 28};
    fedkd_partition *partition = NULL;
    int32_t *labels = malloc(SAMPLES * sizeof *labels);
    fedkd_rng rng = fedkd_rng_stream(1, FEDKD_RNG_TEST, 0, 0);
    for (int i = 0; labels && i < SAMPLES; i++) labels[i] = (int32_t)fedkd_rng_below(&rng, CLASSES);
    fedkd_partition_settings ps = fedkd_partition_default_settings();
    snprintf(ps.scheme, sizeof ps.scheme, "dirichlet");
    ps.num_clients = clients;
    ps.alpha = 0.5;
    ps.min_size = 10;
    ps.seed = 42;
    fedkd_status status = labels ? FEDKD_OK : FEDKD_ERR_NOMEM;
    if (!status) status = fedkd_config_load(&config, NULL, sets, 2);
    if (!status) status = fedkd_model_spec_from_json(&spec, config.model, input, CLASSES, "--model");
    if (!status) status = fedkd_partition_create(&partition, &ps, labels, SAMPLES, CLASSES);
    if (status) {
        fprintf(stderr, "fedkd-bench-checkpoint: %s\n", fedkd_error_message());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    fedkd_model *probe = NULL;
    if (fedkd_model_create(&probe, &spec, 1)) MPI_Abort(MPI_COMM_WORLD, 1);
    size_t num_params = probe->num_params;
    fedkd_model_destroy(&probe);

    size_t state_len = strcmp(state, "model") == 0 ? num_params : 0;
    int *hosted = malloc((size_t)clients * sizeof *hosted), num_hosted = 0;
    for (int c = 0; c < clients; c++)
        if (fedkd_client_host_rank(c, size) == rank) hosted[num_hosted++] = c;
    float *global = fedkd_alloc(num_params * sizeof(float));
    float *rows = state_len ? fedkd_alloc((size_t)num_hosted * state_len * sizeof(float) + 64) : NULL;
    fedkd_round_metrics *metrics = calloc((size_t)rounds + (size_t)reps, sizeof *metrics);
    for (size_t i = 0; i < num_params; i++) global[i] = (float)fedkd_rng_normal(&rng) * 0.05f;
    for (size_t i = 0; rows && i < (size_t)num_hosted * state_len; i++) rows[i] = (float)i * 1e-6f;
    for (int r = 0; r < rounds + reps; r++) {
        metrics[r].round = r + 1;
        metrics[r].participants = clients;
        metrics[r].test_accuracy = 0.5 + 0.001 * r;
    }

    double write_s[MAX_REPS], read_s[MAX_REPS], rows_s[MAX_REPS];
    char path[1024];
    long long bytes = 0;
    for (int rep = 0; rep < reps; rep++) {
        fedkd_checkpoint_contents c = {
            .round = rounds + rep,
            .config = &config,
            .spec = &spec,
            .num_params = num_params,
            .global = global,
            .partition = partition,
            .client_state_len = state_len,
            .num_hosted = num_hosted,
            .hosted = hosted,
            .client_state = rows,
            .metrics = metrics,
            .wall_seconds = 1.0,
        };
        MPI_Barrier(MPI_COMM_WORLD);
        double t = fedkd_time_now();
        status = fedkd_checkpoint_write(MPI_COMM_WORLD, dir, 1, &c, path, sizeof path);
        write_s[rep] = slowest(fedkd_time_now() - t);
        if (status) {
            if (fedkd_error_message()[0])
                fprintf(stderr, "fedkd-bench-checkpoint: %s\n", fedkd_error_message());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        struct stat info;
        if (rank == 0 && stat(path, &info) == 0) bytes = (long long)info.st_size;

        t = fedkd_time_now();
        if (rank == 0) {
            fedkd_checkpoint k;
            status = fedkd_checkpoint_read(path, &k);
            if (!status) fedkd_checkpoint_clear(&k);
        }
        read_s[rep] = fedkd_time_now() - t;
        MPI_Bcast(&read_s[rep], 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        t = fedkd_time_now();
        if (!status && state_len)
            status = fedkd_checkpoint_read_client_states(path, hosted, num_hosted, state_len, rows);
        rows_s[rep] = slowest(fedkd_time_now() - t);
        int failed = status != FEDKD_OK, any = 0;
        MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any) {
            if (failed) fprintf(stderr, "fedkd-bench-checkpoint: %s\n", fedkd_error_message());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    if (rank == 0) {
        printf("%-4s %6d %-6s %3d %12lld %9.4f %9.4f %9.4f\n", model, clients, state, size, bytes,
               median(write_s, reps), median(read_s, reps), median(rows_s, reps));
        fflush(stdout);
        remove(path);
    }
    fedkd_free(global);
    fedkd_free(rows);
    free(metrics);
    free(hosted);
    free(labels);
    fedkd_partition_destroy(&partition);
    fedkd_config_free(&config);
    MPI_Finalize();
    return 0;
}
