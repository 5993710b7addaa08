/* The checkpoint writer and reader under MPI, with the per-client and server
 * state that FedAvg does not use but the KD algorithms will:
 *   - each rank writes the state rows of the clients it hosts (round-robin
 *     placement at this P) into one [clients, state_len] dataset;
 *   - the file reads back exactly, and every rank can read its rows under
 *     another placement (a resume at a different number of ranks);
 *   - a write failing on one rank fails on every rank, told once, and leaves
 *     the previous checkpoint and no .tmp;
 *   - keep = 2 keeps the two newest; the newest is found;
 *   - a config may resume only when nothing but rounds (and friends) changed.
 * Run with mpiexec at any -np: test_ckpt_parallel DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "fedkd/fl/fl.h"
#include "fedkd/io/checkpoint.h"
#include "fedkd/config/config.h"
#include "fedkd/io/model_file.h"
#include "fedkd/nn/model_json.h"
#include "../test_util.h"

enum { CLIENTS = 5, SAMPLES = 60, CLASSES = 3, STATE_LEN = 10, SERVER_LEN = 4, ROUNDS = 8 };

static const char *model_json =
    "model=[{\"type\":\"dense\",\"units\":8},{\"type\":\"relu\"},{\"type\":\"dense\",\"units\":3}]";

static float client_value(int client, size_t j) { return (float)client * 100.0f + (float)j; }

typedef struct fixture {
    fedkd_config config;
    fedkd_model_spec spec;
    fedkd_partition *partition;
    size_t num_params;
    float *global;
    float server_state[SERVER_LEN];
    fedkd_round_metrics metrics[ROUNDS];
    int hosted[CLIENTS], num_hosted;
    float client_state[CLIENTS * STATE_LEN];
} fixture;

static int load_config(fedkd_config *config, const char *extra)
{
    const char *sets[] = {model_json, "clients.count=5", "data.name=synthetic", extra};
    return fedkd_config_load(config, NULL, sets, extra ? 4 : 3) == FEDKD_OK;
}

static int make_fixture(fixture *x, int rank, int size)
{
    memset(x, 0, sizeof *x);
    if (!load_config(&x->config, NULL)) return 0;
    fedkd_shape input = {6, 1, 1};
    if (fedkd_model_spec_from_json(&x->spec, x->config.model, input, CLASSES, "test")) return 0;
    x->num_params = 6 * 8 + 8 + 8 * 3 + 3;
    x->global = calloc(x->num_params, sizeof *x->global);
    for (size_t i = 0; i < x->num_params; i++) x->global[i] = (float)i * 0.001f - 0.02f;
    for (int j = 0; j < SERVER_LEN; j++) x->server_state[j] = 0.5f + (float)j;
    for (int r = 0; r < ROUNDS; r++) {
        x->metrics[r].round = r + 1;
        x->metrics[r].participants = CLIENTS;
        x->metrics[r].test_accuracy = 0.1 * (r + 1) + 1e-17;
        x->metrics[r].test_loss = 1.0 / (r + 3);
        x->metrics[r].bytes_up = 1000u + (unsigned)r;
        x->metrics[r].round_seconds = 0.25;
    }
    int32_t labels[SAMPLES];
    for (int i = 0; i < SAMPLES; i++) labels[i] = i % CLASSES;
    fedkd_partition_settings ps = fedkd_partition_default_settings();
    snprintf(ps.scheme, sizeof ps.scheme, "dirichlet");
    ps.num_clients = CLIENTS;
    ps.alpha = 0.5;
    ps.min_size = 2;
    ps.seed = 7;
    if (fedkd_partition_create(&x->partition, &ps, labels, SAMPLES, CLASSES)) return 0;
    for (int c = 0; c < CLIENTS; c++)
        if (fedkd_client_host_rank(c, size) == rank) {
            for (size_t j = 0; j < STATE_LEN; j++)
                x->client_state[(size_t)x->num_hosted * STATE_LEN + j] = client_value(c, j);
            x->hosted[x->num_hosted++] = c;
        }
    return x->global != NULL;
}

static fedkd_status write_round(const fixture *x, const char *dir, int round, int keep)
{
    fedkd_checkpoint_contents c = {
        .round = round,
        .config = &x->config,
        .spec = &x->spec,
        .num_params = x->num_params,
        .global = x->global,
        .server_state_len = SERVER_LEN,
        .server_state = x->server_state,
        .partition = x->partition,
        .client_state_len = STATE_LEN,
        .num_hosted = x->num_hosted,
        .hosted = x->hosted,
        .client_state = x->client_state,
        .metrics = x->metrics,
        .wall_seconds = 12.5,
    };
    return fedkd_checkpoint_write(MPI_COMM_WORLD, dir, keep, &c, NULL, 0);
}

static void check_read_back(const fixture *x, const char *path)
{
    fedkd_checkpoint k;
    fedkd_status status = fedkd_checkpoint_read(path, &k);
    CHECK(status == FEDKD_OK, "read %s: %s", path, fedkd_error_message());
    if (status) return;
    CHECK(k.round == 3 && k.format_version == FEDKD_CHECKPOINT_FORMAT_VERSION, "round %d", k.round);
    CHECK(k.num_params == x->num_params &&
              memcmp(k.global, x->global, x->num_params * sizeof(float)) == 0,
          "global model differs");
    CHECK(k.server_state_len == SERVER_LEN &&
              memcmp(k.server_state, x->server_state, sizeof x->server_state) == 0,
          "server state differs");
    CHECK(k.num_clients == CLIENTS && k.client_state_len == STATE_LEN, "clients %d x %zu",
          k.num_clients, k.client_state_len);
    for (int c = 0; c < CLIENTS; c++)
        CHECK(k.client_num_samples[c] == (int64_t)fedkd_partition_client_size(x->partition, c),
              "client %d size", c);
    CHECK(k.partition->offsets[CLIENTS] == x->partition->offsets[CLIENTS] &&
              memcmp(k.partition->indices, x->partition->indices,
                     x->partition->offsets[CLIENTS] * sizeof(uint32_t)) == 0 &&
              strcmp(k.partition->scheme, "dirichlet") == 0,
          "partition differs");
    CHECK(k.num_metrics == 3 && memcmp(k.metrics, x->metrics, 3 * sizeof *k.metrics) == 0,
          "metrics differ");
    CHECK(k.wall_seconds == 12.5, "wall seconds %g", k.wall_seconds);
    CHECK(fedkd_model_spec_difference(&k.spec, &x->spec, NULL, 0) == 0, "spec differs");
    fedkd_checkpoint_clear(&k);
}

/* Reads the rows of the clients this rank would host at `size` ranks. */
static void check_rows(const char *path, int rank, int size)
{
    int clients[CLIENTS], n = 0;
    for (int c = 0; c < CLIENTS; c++)
        if (fedkd_client_host_rank(c, size) == rank) clients[n++] = c;
    float rows[CLIENTS * STATE_LEN];
    fedkd_status status = fedkd_checkpoint_read_client_states(path, clients, n, STATE_LEN, rows);
    CHECK(status == FEDKD_OK, "rows at P=%d: %s", size, fedkd_error_message());
    for (int i = 0; !status && i < n; i++)
        for (size_t j = 0; j < STATE_LEN; j++)
            CHECK(rows[(size_t)i * STATE_LEN + j] == client_value(clients[i], j),
                  "client %d value %zu at P=%d", clients[i], j, size);
}

static int exists(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 2) {
        fprintf(stderr, "usage: test_ckpt_parallel DIR\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *dir = argv[1];
    if (rank == 0) mkdir(dir, 0777);
    MPI_Barrier(MPI_COMM_WORLD);
    fixture x;
    int made = make_fixture(&x, rank, size);
    CHECK(made, "fixture: %s", fedkd_error_message());
    if (!made) MPI_Abort(MPI_COMM_WORLD, 1);

    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint-000003.h5", dir);
    fedkd_status status = write_round(&x, dir, 3, 2);
    CHECK(status == FEDKD_OK, "write: %s", fedkd_error_message());
    if (rank == 0) check_read_back(&x, path);
    check_rows(path, rank, size);
    check_rows(path, rank, size + 1);
    check_rows(path, rank, 1);

    /* One rank's write fails: all fail, one message, nothing left behind. */
    char failing[16];
    snprintf(failing, sizeof failing, "%d", size - 1);
    setenv("FEDKD_TEST_FAIL_CHECKPOINT_ON_RANK", failing, 1);
    fedkd_error_clear();
    status = write_round(&x, dir, 4, 2);
    unsetenv("FEDKD_TEST_FAIL_CHECKPOINT_ON_RANK");
    CHECK(status == FEDKD_ERR_IO, "a failing rank gave status %d", (int)status);
    int has_message = fedkd_error_message()[0] != 0, messages = 0;
    MPI_Allreduce(&has_message, &messages, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CHECK(messages == 1, "%d ranks kept a message, expected 1", messages);
    if (rank == size - 1)
        CHECK(strstr(fedkd_error_message(), "checkpoint of round 4 not written") != NULL,
              "message: %s", fedkd_error_message());
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        CHECK(!exists(dir, "checkpoint-000004.h5") && !exists(dir, "checkpoint-000004.h5.tmp"),
              "a failed write left a file");
        check_read_back(&x, path);
    }

    /* keep = 2: rounds 5 and 6 stay, 3 goes; the newest is 6. */
    fedkd_error_clear();
    status = write_round(&x, dir, 5, 2);
    if (!status) status = write_round(&x, dir, 6, 2);
    CHECK(status == FEDKD_OK, "writes 5, 6: %s", fedkd_error_message());
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        CHECK(!exists(dir, "checkpoint-000003.h5") && exists(dir, "checkpoint-000005.h5") &&
                  exists(dir, "checkpoint-000006.h5"),
              "keep = 2 did not keep exactly rounds 5 and 6");
        char latest[600];
        int round = 0;
        CHECK(fedkd_checkpoint_find_latest(dir, latest, sizeof latest, &round) == FEDKD_OK &&
                  round == 6 && strstr(latest, "checkpoint-000006.h5"),
              "latest: round %d %s", round, latest);
        CHECK(fedkd_checkpoint_find_latest("/nonexistent/dir", latest, sizeof latest, &round) ==
                      FEDKD_OK && round == 0,
              "a missing dir has no checkpoint");

        /* Which configs may resume. */
        char *stored = fedkd_config_to_string(&x.config);
        fedkd_config other;
        CHECK(fedkd_checkpoint_check_config("c.h5", stored, 3, &x.config) == FEDKD_OK,
              "the same config: %s", fedkd_error_message());
        if (load_config(&other, "rounds=50")) {
            CHECK(fedkd_checkpoint_check_config("c.h5", stored, 3, &other) == FEDKD_OK,
                  "more rounds: %s", fedkd_error_message());
            fedkd_config_free(&other);
        }
        if (load_config(&other, "checkpoint.every=1")) {
            CHECK(fedkd_checkpoint_check_config("c.h5", stored, 3, &other) == FEDKD_OK,
                  "checkpoint.every: %s", fedkd_error_message());
            fedkd_config_free(&other);
        }
        if (load_config(&other, "data.cache_dir=\"\"")) {
            CHECK(fedkd_checkpoint_check_config("c.h5", stored, 3, &other) == FEDKD_OK,
                  "data.cache_dir: %s", fedkd_error_message());
            fedkd_config_free(&other);
        }
        if (load_config(&other, "run.compute_slots=1")) {
            CHECK(fedkd_checkpoint_check_config("c.h5", stored, 3, &other) == FEDKD_OK,
                  "run.compute_slots: %s", fedkd_error_message());
            fedkd_config_free(&other);
        }
        if (load_config(&other, "local.lr=0.5")) {
            CHECK(fedkd_checkpoint_check_config("c.h5", stored, 3, &other) == FEDKD_ERR_CONFIG &&
                      strstr(fedkd_error_message(), "`local.lr` is 0.5") &&
                      strstr(fedkd_error_message(), "written with 0.05"),
                  "local.lr: %s", fedkd_error_message());
            fedkd_config_free(&other);
        }
        if (load_config(&other, "rounds=2")) {
            CHECK(fedkd_checkpoint_check_config("c.h5", stored, 3, &other) == FEDKD_ERR_CONFIG &&
                      strstr(fedkd_error_message(), "round 3"),
                  "fewer rounds: %s", fedkd_error_message());
            fedkd_config_free(&other);
        }
        free(stored);
    }
    fedkd_partition_destroy(&x.partition);
    free(x.global);
    fedkd_config_free(&x.config);
    int failures = test_failures, total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int code = rank == 0 ? test_finish("checkpoint-parallel") : (test_failures ? 1 : 0);
    if (rank != 0 && test_failures) test_finish("checkpoint-parallel");
    MPI_Finalize();
    return total ? 1 : code;
}
