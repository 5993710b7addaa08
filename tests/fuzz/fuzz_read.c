/* Runs one input through one reader, for the fuzz suite: the library's
 * readers called as the simulator calls them, without MPI, so that a case
 * costs milliseconds and a crash takes down only this process.
 *
 *   fuzz_read config FILE          a config file (fedkd_config_load)
 *   fuzz_read set KEY=VALUE        one --set override
 *   fuzz_read idx IMAGES LABELS    an IDX pair, plain or gzipped
 *   fuzz_read h5data FILE          an HDF5 dataset: count, describe, load
 *   fuzz_read model FILE           a model file
 *   fuzz_read checkpoint FILE      a checkpoint, its client rows, inspect
 *   fuzz_read grid FILE            a sweep grid and every point's config
 *   fuzz_read batch LIST SECONDS   every case of LIST, one line each
 *                                  "ID<tab>KIND<tab>INPUT[<tab>INPUT]", in a
 *                                  child process each (a crash ends only the
 *                                  case), killed after SECONDS
 *
 * Exits 0 when the input was accepted, 1 with exactly one line
 * "fuzz_read: error: MESSAGE" on stderr when it was refused. In batch mode,
 * prints "ID<tab>OUTCOME<tab>first line of stderr" per case, the outcome as
 * in fuzz_test.sh (ok, refused, crash, hang, sanitizer, bad-refusal), with
 * each case's stderr in LIST.ID.err, and exits 0. Forking a loaded process
 * costs a millisecond where starting one costs tens, so a batch of hundreds
 * of cases takes seconds. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "fedkd/io/checkpoint.h"
#include "fedkd/config/config.h"
#include "fedkd/data/data.h"
#include "fedkd/io/inspect.h"
#include "fedkd/io/model_file.h"
#include "fedkd/experiments/sweep.h"

/* A grid beyond this many points is checked on its first ones only. */
enum { MAX_POINTS_CHECKED = 64 };

static fedkd_status read_checkpoint(const char *path)
{
    fedkd_checkpoint k;
    fedkd_status status = fedkd_checkpoint_read(path, &k);
    if (status) return status;
    if (k.client_state_len > 0) {
        int n = k.num_clients < 64 ? k.num_clients : 64;
        int clients[64];
        for (int i = 0; i < n; i++) clients[i] = i;
        float *rows = malloc((size_t)n * k.client_state_len * sizeof *rows);
        status = rows ? fedkd_checkpoint_read_client_states(path, clients, n, k.client_state_len,
                                                            rows)
                      : FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory", path);
        free(rows);
    }
    fedkd_checkpoint_clear(&k);
    if (status) return status;
    FILE *sink = fopen("/dev/null", "w");
    status = fedkd_inspect_file(path, sink ? sink : stdout);
    if (sink) fclose(sink);
    return status;
}

static fedkd_status read_h5data(const char *path)
{
    size_t count = 0;
    fedkd_shape shape;
    int classes = 0;
    int32_t *labels = NULL;
    fedkd_dataset *d = NULL;
    fedkd_status status = fedkd_h5data_count(path, &count);
    if (!status) status = fedkd_h5data_describe(path, &count, &shape, &classes, &labels);
    free(labels);
    if (!status) status = fedkd_h5data_load_all(&d, path, 0);
    fedkd_dataset_destroy(&d);
    if (!status && count > 1) {
        const uint32_t rows[3] = {(uint32_t)(count - 1), 0, (uint32_t)(count - 1)};
        status = fedkd_h5data_load(&d, path, rows, 3);
        fedkd_dataset_destroy(&d);
    }
    return status;
}

static fedkd_status read_grid(const char *path)
{
    fedkd_sweep_grid *grid = NULL;
    fedkd_status status = fedkd_sweep_grid_load(&grid, path, NULL, 0, 4);
    if (status) return status;
    int points = fedkd_sweep_grid_num_points(grid);
    for (int p = 0; !status && p < points && p < MAX_POINTS_CHECKED; p++) {
        fedkd_config config;
        status = fedkd_sweep_point_config(grid, p, &config);
        if (!status) fedkd_config_free(&config);
    }
    fedkd_sweep_grid_destroy(&grid);
    return status;
}

static int run_one(int argc, char **argv);

/* The exit code a sanitizer report gets (fuzz_test.sh sets it). */
enum { SANITIZER_EXIT = 86 };

static const char *classify(int wait_status, const char *err_path, char *first, size_t size)
{
    FILE *err = fopen(err_path, "r");
    char line[1024];
    int lines = 0, errors = 0, sanitizer = 0;
    first[0] = '\0';
    while (err && fgets(line, sizeof line, err)) {
        if (line[0] == '\n') continue;
        if (lines++ == 0) {
            size_t length = strcspn(line, "\n");
            if (length >= size) length = size - 1;
            memcpy(first, line, length);
            first[length] = '\0';
        }
        if (strncmp(line, "fuzz_read: error: ", 18) == 0) errors++;
        if (strstr(line, "Sanitizer") || strstr(line, "runtime error:")) sanitizer = 1;
    }
    if (err) fclose(err);
    if (sanitizer) return "sanitizer";
    if (WIFSIGNALED(wait_status))
        return WTERMSIG(wait_status) == SIGALRM || WTERMSIG(wait_status) == SIGKILL ? "hang"
                                                                                   : "crash";
    int code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
    if (code == SANITIZER_EXIT) return "sanitizer";
    if (code == 0) return lines == 0 ? "ok" : "bad-refusal";
    if (code == 1 && lines == 1 && errors == 1) return "refused";
    return "bad-refusal";
}

static int run_batch(const char *list_path, unsigned seconds)
{
    FILE *list = fopen(list_path, "r");
    if (!list) {
        fprintf(stderr, "fuzz_read: cannot open %s\n", list_path);
        return 2;
    }
    /* The whole list is read before the first fork: a child's exit()
     * would otherwise move the shared file offset under the parent. */
    size_t capacity = 1 << 16, used = 0;
    char *text = malloc(capacity);
    size_t got;
    while (text && (got = fread(text + used, 1, capacity - used - 1, list)) > 0) {
        used += got;
        if (capacity - used < 2) {
            char *grown = realloc(text, capacity * 2);
            if (!grown) break;
            text = grown;
            capacity *= 2;
        }
    }
    fclose(list);
    if (!text) return 2;
    text[used] = '\0';
    char *next_line = text;
    while (*next_line) {
        char *line = next_line;
        size_t length = strcspn(line, "\n");
        next_line = line[length] ? line + length + 1 : line + length;
        line[length] = '\0';
        char *fields[5] = {NULL};
        int n = 0;
        for (char *field = strtok(line, "\t"); field && n < 5; field = strtok(NULL, "\t"))
            fields[n++] = field;
        if (n < 3) continue;
        char err_path[4200];
        snprintf(err_path, sizeof err_path, "%s.%s.err", list_path, fields[0]);
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            if (!freopen(err_path, "w", stderr)) _exit(3);
            if (!freopen("/dev/null", "w", stdout)) _exit(3);
            alarm(seconds);
            char *args[5] = {"fuzz_read", fields[1], fields[2], fields[3], NULL};
            exit(run_one(n == 4 ? 4 : 3, args));
        }
        int wait_status = 0;
        if (child < 0 || waitpid(child, &wait_status, 0) < 0) {
            fprintf(stderr, "fuzz_read: cannot run case %s\n", fields[0]);
            free(text);
            return 2;
        }
        char first[512];
        const char *outcome = classify(wait_status, err_path, first, sizeof first);
        printf("%s\t%s\t%s\n", fields[0], outcome, first);
    }
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "batch") == 0) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        return run_batch(argv[2], (unsigned)strtoul(argv[3], NULL, 10));
    }
    return run_one(argc, argv);
}

static int run_one(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fuzz_read config|set|idx|h5data|model|checkpoint|grid INPUT...\n");
        return 2;
    }
    const char *kind = argv[1], *input = argv[2];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fedkd_status status;
    if (strcmp(kind, "config") == 0 || strcmp(kind, "set") == 0) {
        fedkd_config config;
        const char *overrides[1] = {input};
        int is_set = strcmp(kind, "set") == 0;
        status = fedkd_config_load(&config, is_set ? NULL : input, overrides, is_set);
        if (!status) fedkd_config_free(&config);
    } else if (strcmp(kind, "idx") == 0 && argc == 4) {
        fedkd_dataset *d = NULL;
        status = fedkd_idx_load(&d, input, argv[3], 0);
        fedkd_dataset_destroy(&d);
    } else if (strcmp(kind, "h5data") == 0) {
        status = read_h5data(input);
    } else if (strcmp(kind, "model") == 0) {
        fedkd_model_spec spec;
        float *params = NULL;
        size_t n = 0;
        char *metadata = NULL;
        status = fedkd_model_file_load(input, &spec, &params, &n, &metadata);
        free(params);
        free(metadata);
    } else if (strcmp(kind, "checkpoint") == 0) {
        status = read_checkpoint(input);
    } else if (strcmp(kind, "grid") == 0) {
        status = read_grid(input);
    } else {
        fprintf(stderr, "fuzz_read: unknown kind %s\n", kind);
        return 2;
    }
    if (status == FEDKD_OK) return 0;
    fprintf(stderr, "fuzz_read: error: %s\n", fedkd_error_message());
    return 1;
}
