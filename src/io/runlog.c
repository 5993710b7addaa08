#include "fedkd/runlog.h"

#include <errno.h>
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
    "train_seconds,comm_seconds,aggregate_seconds,eval_seconds,round_seconds,eval_overlapped\n";

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
    /* %.17g keeps every bit of the doubles, so logs of two runs can be
     * compared for bit-identity. */
    int a = fprintf(log->jsonl,
                    "{\"round\":%d,\"participants\":%d,\"test_accuracy\":%.17g,"
                    "\"test_loss\":%.17g,\"train_loss\":%.17g,\"bytes_down\":%llu,"
                    "\"bytes_up\":%llu,\"wire_bytes\":%llu,\"train_seconds\":%.6f,"
                    "\"comm_seconds\":%.6f,\"aggregate_seconds\":%.6f,"
                    "\"eval_seconds\":%.6f,\"round_seconds\":%.6f,\"eval_overlapped\":%d}\n",
                    m->round, m->participants, m->test_accuracy, m->test_loss, m->train_loss,
                    (unsigned long long)m->bytes_down, (unsigned long long)m->bytes_up,
                    (unsigned long long)m->wire_bytes, m->train_seconds, m->comm_seconds,
                    m->aggregate_seconds, m->eval_seconds, m->round_seconds, m->eval_overlapped);
    int b = fprintf(log->csv, "%d,%d,%.17g,%.17g,%.17g,%llu,%llu,%llu,%.6f,%.6f,%.6f,%.6f,%.6f,%d\n",
                    m->round, m->participants, m->test_accuracy, m->test_loss, m->train_loss,
                    (unsigned long long)m->bytes_down, (unsigned long long)m->bytes_up,
                    (unsigned long long)m->wire_bytes, m->train_seconds, m->comm_seconds,
                    m->aggregate_seconds, m->eval_seconds, m->round_seconds, m->eval_overlapped);
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
