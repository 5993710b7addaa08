/* Pre-training and its reuse, in one MPI process on synthetic data:
 * - a first run trains every client and writes client-<id>.h5 with the
 *   metadata (client, seed, partition, epochs, train size, test accuracy,
 *   fingerprint); pretrain.json says "trained";
 * - a second run with the same config says "reused" for every client and
 *   leaves the files' weights untouched;
 * - another pretrain.epochs makes the fingerprint differ: "retrained", and
 *   the weights change;
 * - a file made elsewhere (no fingerprint, right classes) is "imported";
 *   one with other classes, or whose datasets do not match its spec, stops
 *   the run with a message naming the file;
 * - a kd-study on the reused models gives the same tables twice.
 * pretrain.json is the record checked: no timing is involved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/core/core.h"
#include "fedkd/experiments/experiments.h"
#include "fedkd/kd/kd.h"
#include "fedkd/io/model_file.h"
#include "fedkd/nn/model_json.h"
#include "../test_util.h"

enum { CLIENTS = 4 };

static char run_dir[256];

static fedkd_status run(const char *mode, const char *const *extra, int num_extra)
{
    char run_override[320], mode_override[64];
    snprintf(run_override, sizeof run_override, "run.dir=%s", run_dir);
    snprintf(mode_override, sizeof mode_override, "mode=%s", mode);
    const char *overrides[32] = {
        "data.name=synthetic", "data.synthetic_train=480", "data.synthetic_test=160",
        "data.synthetic_features=6", "data.synthetic_classes=3",
        "model=[{\"type\":\"dense\",\"units\":16},{\"type\":\"relu\"},{\"type\":\"dense\",\"units\":3}]",
        "clients.count=4", "partition.scheme=dirichlet", "partition.alpha=0.5",
        "partition.min_size=5", "local.batch_size=16", "pretrain.epochs=2", "kd.pairs=ring",
        "kd.temperature_grid=1,4", "kd.weight_grid=0.25,0.75", "seed=9",
        run_override, mode_override};
    int n = 18;
    for (int i = 0; i < num_extra; i++) overrides[n++] = extra[i];
    fedkd_config config;
    fedkd_status status = fedkd_config_load(&config, NULL, overrides, n);
    CHECK(status == FEDKD_OK, "config: %s", fedkd_error_message());
    if (status) return status;
    fedkd_run_result result;
    if (strcmp(mode, "pretrain") == 0) status = fedkd_run_pretrain(&config, MPI_COMM_WORLD, NULL, &result);
    else status = fedkd_run_kd_study(&config, MPI_COMM_WORLD, NULL, &result);
    fedkd_config_free(&config);
    return status;
}

static char *read_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", run_dir, name);
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    fseek(file, 0, SEEK_END);
    long length = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = calloc((size_t)length + 1, 1);
    if (text && fread(text, 1, (size_t)length, file) != (size_t)length) text[0] = '\0';
    fclose(file);
    return text;
}

/* How many clients pretrain.json lists with this origin. */
static int count_origin(const char *origin)
{
    char *text = read_file("pretrain.json");
    cJSON *json = text ? cJSON_Parse(text) : NULL;
    free(text);
    int count = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItem(json, "clients"))
    {
        const cJSON *o = cJSON_GetObjectItem(item, "origin");
        count += cJSON_IsString(o) && strcmp(o->valuestring, origin) == 0;
    }
    cJSON_Delete(json);
    return count;
}

static float *load_params(int client, size_t *n, char **metadata)
{
    char path[512];
    snprintf(path, sizeof path, "%s/pretrained/client-%d.h5", run_dir, client);
    fedkd_model_spec spec;
    float *params = NULL;
    fedkd_status status = fedkd_model_file_load(path, &spec, &params, n, metadata);
    CHECK(status == FEDKD_OK, "load %s: %s", path, fedkd_error_message());
    return params;
}

static void write_foreign(int client, int classes)
{
    char path[512], text[256];
    snprintf(path, sizeof path, "%s/pretrained/client-%d.h5", run_dir, client);
    snprintf(text, sizeof text,
             "[{\"type\":\"dense\",\"units\":8},{\"type\":\"relu\"},{\"type\":\"dense\",\"units\":%d}]",
             classes);
    cJSON *layers = cJSON_Parse(text);
    fedkd_model_spec spec;
    fedkd_model *model = NULL;
    fedkd_status status = fedkd_model_spec_from_json(&spec, layers, (fedkd_shape){6, 1, 1},
                                                     classes, "test");
    if (!status) status = fedkd_model_create(&model, &spec, 1);
    if (!status) {
        fedkd_model_init_params(model, 1, 77);
        status = fedkd_model_file_save(path, &spec, model->params, model->num_params,
                                       "{\"made_by\":\"someone else\"}");
    }
    CHECK(status == FEDKD_OK, "foreign model: %s", fedkd_error_message());
    cJSON_Delete(layers);
    fedkd_model_destroy(&model);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    fedkd_log_set_quiet(1);
    snprintf(run_dir, sizeof run_dir, "/tmp/fedkd-test-pretrain-%d", (int)getpid());

    /* 1. Train. */
    fedkd_status status = run("pretrain", NULL, 0);
    CHECK(status == FEDKD_OK, "first pretrain: %s", fedkd_error_message());
    CHECK(count_origin("trained") == CLIENTS, "trained %d of %d", count_origin("trained"), CLIENTS);
    size_t n0 = 0;
    char *metadata = NULL;
    float *first = load_params(1, &n0, &metadata);
    cJSON *meta = metadata ? cJSON_Parse(metadata) : NULL;
    const char *keys[] = {"client", "seed", "partition", "epochs", "train_size", "test_accuracy",
                          "fingerprint"};
    for (int i = 0; i < 7; i++)
        CHECK(cJSON_GetObjectItem(meta, keys[i]) != NULL, "metadata lacks %s: %s", keys[i],
              metadata ? metadata : "(none)");
    const cJSON *client = cJSON_GetObjectItem(meta, "client");
    const cJSON *partition = cJSON_GetObjectItem(meta, "partition");
    CHECK(cJSON_IsNumber(client) && client->valueint == 1, "metadata client");
    CHECK(cJSON_IsString(partition) && strcmp(partition->valuestring, "dirichlet(0.5)") == 0,
          "metadata partition");
    cJSON_Delete(meta);
    free(metadata);

    /* 2. Same config: reused, weights untouched. */
    status = run("pretrain", NULL, 0);
    CHECK(status == FEDKD_OK, "second pretrain: %s", fedkd_error_message());
    CHECK(count_origin("reused") == CLIENTS, "reused %d of %d", count_origin("reused"), CLIENTS);
    size_t n1 = 0;
    float *second = load_params(1, &n1, NULL);
    CHECK(first && second && n0 == n1 && memcmp(first, second, n0 * sizeof(float)) == 0,
          "reuse changed the weights");
    free(second);

    /* 3. Other epochs: the fingerprint differs, the models are trained again. */
    const char *three_epochs[] = {"pretrain.epochs=3"};
    status = run("pretrain", three_epochs, 1);
    CHECK(status == FEDKD_OK, "retrain: %s", fedkd_error_message());
    CHECK(count_origin("retrained") == CLIENTS, "retrained %d of %d", count_origin("retrained"),
          CLIENTS);
    second = load_params(1, &n1, NULL);
    CHECK(first && second && memcmp(first, second, n0 * sizeof(float)) != 0,
          "retraining left the weights unchanged");
    free(second);
    free(first);

    /* 4. Made elsewhere: imported; other classes: refused, naming the file. */
    write_foreign(2, 3);
    status = run("pretrain", three_epochs, 1);
    CHECK(status == FEDKD_OK, "import: %s", fedkd_error_message());
    CHECK(count_origin("imported") == 1 && count_origin("reused") == CLIENTS - 1,
          "imported %d, reused %d", count_origin("imported"), count_origin("reused"));
    write_foreign(2, 5);
    status = run("pretrain", three_epochs, 1);
    CHECK(status == FEDKD_ERR_FORMAT && strstr(fedkd_error_message(), "client-2.h5") &&
              strstr(fedkd_error_message(), "has 5 classes, the data have 3"),
          "other classes: %s", fedkd_error_message());

    /* 5. kd-study: the same tables twice (models reused the second time). */
    write_foreign(2, 3);
    status = run("kd-study", three_epochs, 1);
    CHECK(status == FEDKD_OK, "kd-study: %s", fedkd_error_message());
    char *results = read_file("kd_summary.csv");
    status = run("kd-study", three_epochs, 1);
    CHECK(status == FEDKD_OK, "kd-study again: %s", fedkd_error_message());
    char *again = read_file("kd_summary.csv");
    CHECK(results && again && strcmp(results, again) == 0, "kd-study tables differ:\n%s\n%s",
          results ? results : "", again ? again : "");
    /* ring pairing: 4 students x (4 pairing methods) + 4 ensemble runs. */
    int lines = 0;
    char *table = read_file("kd_results.csv");
    for (char *p = table; p && *p; p++) lines += *p == '\n';
    CHECK(lines == 1 + 4 * 5, "kd_results.csv has %d lines", lines);
    free(table);
    free(results);
    free(again);

    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", run_dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", run_dir);
    MPI_Finalize();
    return test_finish("test_kd_pretrain");
}
