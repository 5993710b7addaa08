#include "fedkd/io/runlog.h"
#include "fedkd/core/core.h"
#include "fedkd/nn/nn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

fedkd_status fedkd_make_directories(const char *path)
{
    char buffer[512];
    if (snprintf(buffer, sizeof buffer, "%s", path) >= (int)sizeof buffer)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `run.dir`: path longer than %zu bytes",
                          sizeof buffer - 1);
    for (char *p = buffer + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buffer, 0777) != 0 && errno != EEXIST)
            return FEDKD_FAIL(FEDKD_ERR_IO, "run directory %s: cannot create %s: %s", path,
                              buffer, strerror(errno));
        *p = '/';
    }
    if (mkdir(buffer, 0777) != 0 && errno != EEXIST)
        return FEDKD_FAIL(FEDKD_ERR_IO, "run directory %s: cannot create: %s", path,
                          strerror(errno));
    struct stat st;
    if (stat(buffer, &st) != 0 || !S_ISDIR(st.st_mode))
        return FEDKD_FAIL(FEDKD_ERR_IO, "run directory %s: exists but is not a directory", path);
    if (access(buffer, W_OK) != 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "run directory %s: not writable: %s", path,
                          strerror(errno));
    return FEDKD_OK;
}

static FILE *open_in_dir(const char *dir, const char *name, const char *mode, char *path,
                         size_t path_size)
{
    snprintf(path, path_size, "%s/%s", dir, name);
    return fopen(path, mode);
}

static const char csv_header[] =
    "round,participants,test_accuracy,test_loss,train_loss,bytes_down,bytes_up,wire_bytes,"
    "train_seconds,comm_seconds,aggregate_seconds,eval_seconds,round_seconds,eval_overlapped,"
    "simulated_seconds,dropped\n";

fedkd_status fedkd_runlog_open(fedkd_runlog *log, const char *dir)
{
    memset(log, 0, sizeof *log);
    fedkd_status status = fedkd_make_directories(dir);
    if (status) return status;
    snprintf(log->dir, sizeof log->dir, "%s", dir);
    char path[640];
    log->jsonl = open_in_dir(dir, "rounds.jsonl", "w", path, sizeof path);
    if (!log->jsonl) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    log->csv = open_in_dir(dir, "rounds.csv", "w", path, sizeof path);
    if (!log->csv) {
        fclose(log->jsonl);
        log->jsonl = NULL;
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    if (fputs(csv_header, log->csv) < 0 || fflush(log->csv) != 0) {
        fedkd_runlog_close(log);
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return FEDKD_OK;
}

fedkd_status fedkd_runlog_write_round(fedkd_runlog *log, const fedkd_round_metrics *m)
{
    return fedkd_runlog_write_round_more(log, m, NULL, 0, NULL);
}

fedkd_status fedkd_runlog_write_round_more(fedkd_runlog *log, const fedkd_round_metrics *m,
                                           const fedkd_round_network *network, int num_models,
                                           const double *scores)
{
    const fedkd_round_network none = {0.0, 0, NULL};
    const fedkd_round_network *n = network ? network : &none;
    /* %.17g keeps every bit of the doubles, so logs of two runs can be
     * compared for bit-identity. */
    int a = fprintf(log->jsonl,
                    "{\"round\":%d,\"participants\":%d,\"test_accuracy\":%.17g,"
                    "\"test_loss\":%.17g,\"train_loss\":%.17g,\"bytes_down\":%llu,"
                    "\"bytes_up\":%llu,\"wire_bytes\":%llu,\"train_seconds\":%.6f,"
                    "\"comm_seconds\":%.6f,\"aggregate_seconds\":%.6f,"
                    "\"eval_seconds\":%.6f,\"round_seconds\":%.6f,\"eval_overlapped\":%d,"
                    "\"simulated_seconds\":%.17g,\"dropped\":%d",
                    m->round, m->participants, m->test_accuracy, m->test_loss, m->train_loss,
                    (unsigned long long)m->bytes_down, (unsigned long long)m->bytes_up,
                    (unsigned long long)m->wire_bytes, m->train_seconds, m->comm_seconds,
                    m->aggregate_seconds, m->eval_seconds, m->round_seconds, m->eval_overlapped,
                    n->simulated_seconds, n->dropped);
    if (a >= 0 && n->dropped_clients) {
        a = fputs(",\"dropped_clients\":[", log->jsonl);
        for (int i = 0; a >= 0 && i < n->dropped; i++)
            a = fprintf(log->jsonl, "%s%d", i ? "," : "", n->dropped_clients[i]);
        if (a >= 0) a = fputs("]", log->jsonl);
    }
    /* Several global models: each one's scores, architecture order. */
    const char *names[2] = {"model_accuracy", "model_loss"};
    for (int k = 0; k < 2 && num_models > 0 && a >= 0; k++) {
        a = fprintf(log->jsonl, ",\"%s\":[", names[k]);
        for (int i = 0; i < num_models && a >= 0; i++)
            a = fprintf(log->jsonl, "%s%.17g", i ? "," : "", scores[k * num_models + i]);
        if (a >= 0) a = fprintf(log->jsonl, "]");
    }
    if (a >= 0) a = fputs("}\n", log->jsonl);
    int b = fprintf(log->csv,
                    "%d,%d,%.17g,%.17g,%.17g,%llu,%llu,%llu,%.6f,%.6f,%.6f,%.6f,%.6f,%d,%.17g,%d\n",
                    m->round, m->participants, m->test_accuracy, m->test_loss, m->train_loss,
                    (unsigned long long)m->bytes_down, (unsigned long long)m->bytes_up,
                    (unsigned long long)m->wire_bytes, m->train_seconds, m->comm_seconds,
                    m->aggregate_seconds, m->eval_seconds, m->round_seconds, m->eval_overlapped,
                    n->simulated_seconds, n->dropped);
    if (a < 0 || b < 0 || fflush(log->jsonl) != 0 || fflush(log->csv) != 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s/rounds.jsonl: write failed: %s", log->dir,
                          strerror(errno));
    return FEDKD_OK;
}

void fedkd_runlog_close(fedkd_runlog *log)
{
    if (log->jsonl) fclose(log->jsonl);
    if (log->csv) fclose(log->csv);
    log->jsonl = log->csv = NULL;
}

fedkd_status fedkd_write_json_file(const char *dir, const char *name, const cJSON *json)
{
    char path[640], temporary[660];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    char *text = cJSON_Print(json);
    if (!text) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory formatting JSON", path);
    FILE *file = fopen(temporary, "w");
    if (!file) {
        free(text);
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", temporary, strerror(errno));
    }
    int failed = fputs(text, file) < 0 || fputc('\n', file) == EOF;
    failed |= fflush(file) != 0 || fsync(fileno(file)) != 0;
    failed |= fclose(file) != 0;
    free(text);
    if (failed || rename(temporary, path) != 0) {
        int saved = errno;
        unlink(temporary);
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    return FEDKD_OK;
}

fedkd_status fedkd_read_json_file(const char *path, const char *what, cJSON **out)
{
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file) {
        if (errno == ENOENT) return FEDKD_OK;
        return FEDKD_FAIL(FEDKD_ERR_IO, "cannot open %s `%s`: %s", what, path, strerror(errno));
    }
    char *text = NULL;
    size_t length = 0, capacity = 0;
    fedkd_status status = FEDKD_OK;
    for (;;) {
        if (capacity - length < 4096) {
            capacity = capacity ? 2 * capacity : 16384;
            char *grown = capacity <= (64u << 20) ? realloc(text, capacity) : NULL;
            if (!grown) {
                status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: too large for a %s", path, what);
                goto done;
            }
            text = grown;
        }
        size_t got = fread(text + length, 1, capacity - length - 1, file);
        length += got;
        if (got == 0) break;
    }
    if (ferror(file)) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "cannot read %s `%s`: %s", what, path, strerror(errno));
        goto done;
    }
    text[length] = '\0';
    const char *end = NULL;
    *out = cJSON_ParseWithOpts(text, &end, 1);
    if (!*out) {
        size_t offset = end && end >= text ? (size_t)(end - text) : length;
        int line = 1, column = 1;
        for (size_t i = 0; i < offset && i < length; i++) {
            if (text[i] == '\n') {
                line++;
                column = 1;
            } else {
                column++;
            }
        }
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s:%d:%d: malformed JSON in this %s", path, line,
                            column, what);
    }
done:
    fclose(file);
    free(text);
    return status;
}

cJSON *fedkd_summary_new(const fedkd_config *config, const char *status)
{
    cJSON *summary = cJSON_CreateObject();
    if (!summary) return NULL;
    cJSON_AddStringToObject(summary, "fedkd_sim_version", FEDKD_VERSION);
    cJSON_AddStringToObject(summary, "status", status);
    cJSON_AddNumberToObject(summary, "seed", (double)config->seed);
    cJSON_AddStringToObject(summary, "mode", config->mode);
    cJSON_AddStringToObject(summary, "algorithm", config->algorithm);
    cJSON_AddStringToObject(summary, "blas_core", fedkd_sgemm_core());
    return summary;
}

fedkd_status fedkd_summary_write(const fedkd_config *config, cJSON *summary)
{
    cJSON *echo = cJSON_Duplicate(config->json, 1);
    if (!summary || !echo || !cJSON_AddItemToObject(summary, "config", echo)) {
        cJSON_Delete(echo);
        cJSON_Delete(summary);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing %s/summary.json",
                          config->run.dir);
    }
    fedkd_status status = fedkd_write_json_file(config->run.dir, "summary.json", summary);
    cJSON_Delete(summary);
    return status;
}

fedkd_status fedkd_summary_write_run(const fedkd_config *config, const char *status_text,
                                     const fedkd_run_result *result, int num_params_known,
                                     const cJSON *extra)
{
    cJSON *summary = fedkd_summary_new(config, status_text);
    if (!summary) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing summary.json");
    char checksum[32];
    snprintf(checksum, sizeof checksum, "%016llx", (unsigned long long)result->params_checksum);
    cJSON_AddNumberToObject(summary, "rounds_run", result->rounds_run);
    cJSON_AddNumberToObject(summary, "final_accuracy", result->final_accuracy);
    cJSON_AddNumberToObject(summary, "best_accuracy", result->best_accuracy);
    cJSON_AddNumberToObject(summary, "target_accuracy", config->target_accuracy);
    if (result->rounds_to_target > 0) {
        cJSON_AddNumberToObject(summary, "rounds_to_target", result->rounds_to_target);
        cJSON_AddNumberToObject(summary, "bytes_to_target", (double)result->bytes_to_target);
    } else {
        cJSON_AddNullToObject(summary, "rounds_to_target");
        cJSON_AddNullToObject(summary, "bytes_to_target");
    }
    cJSON_AddNumberToObject(summary, "bytes_down_total", (double)result->bytes_down_total);
    cJSON_AddNumberToObject(summary, "bytes_up_total", (double)result->bytes_up_total);
    cJSON_AddNumberToObject(summary, "wire_bytes_total", (double)result->wire_bytes_total);
    cJSON_AddNumberToObject(summary, "wall_seconds", result->wall_seconds);
    /* The simulated clock's totals (to target: null when not reached); left
     * out without a clock, so that sweep tables gain no empty columns. */
    if (result->simulated) {
        cJSON_AddNumberToObject(summary, "simulated_seconds_total",
                                result->simulated_seconds_total);
        if (result->rounds_to_target > 0)
            cJSON_AddNumberToObject(summary, "simulated_seconds_to_target",
                                    result->simulated_seconds_to_target);
        else
            cJSON_AddNullToObject(summary, "simulated_seconds_to_target");
    }
    if (result->setup_seconds > 0.0) {
        cJSON_AddNumberToObject(summary, "setup_seconds", result->setup_seconds);
        cJSON_AddNumberToObject(summary, "wire_bytes_setup", (double)result->setup_bytes);
    }
    if (num_params_known) {
        cJSON_AddNumberToObject(summary, "num_params", (double)result->num_params);
        cJSON_AddStringToObject(summary, "params_checksum", checksum);
    }
    for (const cJSON *item = extra ? extra->child : NULL; item; item = item->next)
        cJSON_AddItemToObject(summary, item->string, cJSON_Duplicate(item, 1));
    return fedkd_summary_write(config, summary);
}

void fedkd_runlog_print_progress(const fedkd_round_metrics *m, int total_rounds, double elapsed)
{
    double eta = m->round > 0 ? elapsed / m->round * (total_rounds - m->round) : 0.0;
    fedkd_log_info("round %*d/%d  acc %.4f  loss %.4f  train-loss %.4f  %.2fs (train %.2fs)  ETA %.0fs",
                   total_rounds >= 100 ? 3 : 2, m->round, total_rounds, m->test_accuracy,
                   m->test_loss, m->train_loss, m->round_seconds, m->train_seconds, eta);
}
