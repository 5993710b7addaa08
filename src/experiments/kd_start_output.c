/* What rank 0 reports of a kd-start run: kd_start.json and kd_start.csv
 * (one entry per start), summary.json (the KD start's outcome in the
 * generic fields, so that sweeps and plots read it like a federation's,
 * plus flat per-start fields that sweeps turn into columns) and the
 * comparison table on stdout.
 *
 * Bytes to target of a start = the payload its federation moved up to the
 * round that reached target_accuracy (weights down and up) + what the
 * clients uploaded to build the start: nothing for the seeded start, their
 * weights for the average, their logits on the public set for the KD start.
 * Total rounds of a start = its consolidation's exchanges with the clients
 * (0, 1, 1) + its federation's rounds to target: the messages the start and
 * the federation cost together.
 * Reductions are relative to the seeded start and need both to reach the
 * target; otherwise they are null. Paths are relative to run.dir, so that
 * the files are the same whatever directory the run used. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "experiments/experiments_private.h"
#include "experiments/kd_start_private.h"

static uint64_t fedavg_bytes_to_target(const kd_start_outcome *o)
{
    return o->run.rounds_to_target > 0 ? o->run.bytes_to_target : 0;
}

static uint64_t total_bytes_to_target(const kd_start_outcome *o)
{
    return o->run.rounds_to_target > 0 ? o->run.bytes_to_target + o->consolidation_bytes : 0;
}

/* Percent fewer than the seeded start, NaN when either missed the target. */
static double reduction(double random, double value)
{
    if (!(random > 0.0) || !(value > 0.0)) return (double)NAN;
    return 100.0 * (random - value) / random;
}

/* 0 when the federation missed the target. */
static int total_rounds(const kd_start_outcome *o)
{
    return o->run.rounds_to_target > 0 ? o->consolidation_rounds + o->run.rounds_to_target : 0;
}

static double total_rounds_reduction(const kd_start_report *r, int s)
{
    return reduction(total_rounds(&r->starts[KD_START_RANDOM]), total_rounds(&r->starts[s]));
}

static double rounds_reduction(const kd_start_report *r, int s)
{
    return reduction(r->starts[KD_START_RANDOM].run.rounds_to_target,
                     r->starts[s].run.rounds_to_target);
}

static double bytes_reduction(const kd_start_report *r, int s)
{
    return reduction((double)total_bytes_to_target(&r->starts[KD_START_RANDOM]),
                     (double)total_bytes_to_target(&r->starts[s]));
}

void kd_start_overall(const kd_start_report *report, fedkd_run_result *out)
{
    const kd_start_outcome *kd = &report->starts[KD_START_KD];
    memset(out, 0, sizeof *out);
    *out = kd->run;
    out->final_params = NULL;
    out->bytes_up_total += kd->consolidation_bytes;
    out->wire_bytes_total += kd->consolidation_wire_bytes;
    out->bytes_to_target = total_bytes_to_target(kd);
    out->num_params = report->num_params;
    out->wall_seconds = report->wall_seconds;
}

/* A count or null (0 means "not reached"). */
static void add_count(cJSON *object, const char *name, uint64_t value)
{
    if (value) cJSON_AddNumberToObject(object, name, (double)value);
    else cJSON_AddNullToObject(object, name);
}

static void add_number(cJSON *object, const char *name, double value)
{
    if (isfinite(value)) cJSON_AddNumberToObject(object, name, value);
    else cJSON_AddNullToObject(object, name);
}

static const char *relative(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (path[0] && strncmp(path, dir, n) == 0 && path[n] == '/') return path + n + 1;
    return path;
}

static cJSON *start_json(const fedkd_config *config, const kd_start_report *r, int s)
{
    const kd_start_outcome *o = &r->starts[s];
    cJSON *item = cJSON_CreateObject();
    if (!item) return NULL;
    char start_checksum[32], checksum[32];
    snprintf(start_checksum, sizeof start_checksum, "%016llx",
             (unsigned long long)o->start_checksum);
    snprintf(checksum, sizeof checksum, "%016llx", (unsigned long long)o->run.params_checksum);
    cJSON_AddStringToObject(item, "start", kd_start_names[s]);
    cJSON_AddStringToObject(item, "run_dir", relative(o->run_dir, config->run.dir));
    cJSON_AddStringToObject(item, "init_model", relative(o->init_model, config->run.dir));
    cJSON_AddStringToObject(item, "start_params_checksum", start_checksum);
    cJSON_AddNumberToObject(item, "round0_accuracy", o->round0_accuracy);
    cJSON_AddNumberToObject(item, "rounds_run", o->run.rounds_run);
    add_count(item, "rounds_to_target", (uint64_t)o->run.rounds_to_target);
    add_count(item, "fedavg_bytes_to_target", fedavg_bytes_to_target(o));
    cJSON_AddNumberToObject(item, "consolidation_bytes", (double)o->consolidation_bytes);
    add_count(item, "bytes_to_target", total_bytes_to_target(o));
    cJSON_AddNumberToObject(item, "consolidation_rounds", o->consolidation_rounds);
    add_count(item, "total_rounds", (uint64_t)total_rounds(o));
    int compared = s != KD_START_RANDOM;
    add_number(item, "reduction_rounds_percent", compared ? rounds_reduction(r, s) : (double)NAN);
    add_number(item, "reduction_total_rounds_percent",
               compared ? total_rounds_reduction(r, s) : (double)NAN);
    add_number(item, "reduction_bytes_percent", compared ? bytes_reduction(r, s) : (double)NAN);
    cJSON_AddNumberToObject(item, "final_accuracy", o->run.final_accuracy);
    cJSON_AddNumberToObject(item, "best_accuracy", o->run.best_accuracy);
    cJSON_AddStringToObject(item, "params_checksum", checksum);
    cJSON_AddNumberToObject(item, "consolidation_wire_bytes", (double)o->consolidation_wire_bytes);
    cJSON_AddBoolToObject(item, "reused", o->reused);
    cJSON_AddNumberToObject(item, "consolidation_seconds", o->consolidation_seconds);
    cJSON_AddNumberToObject(item, "fedavg_seconds", o->run.wall_seconds);
    cJSON_AddNumberToObject(item, "wall_seconds", o->consolidation_seconds + o->run.wall_seconds);
    return item;
}

static cJSON *report_json(const fedkd_config *config, const kd_start_report *r)
{
    cJSON *json = cJSON_CreateObject();
    if (!json) return NULL;
    cJSON_AddStringToObject(json, "fedkd_sim_version", FEDKD_VERSION);
    cJSON_AddNumberToObject(json, "seed", (double)config->seed);
    cJSON_AddStringToObject(json, "algorithm", config->algorithm);
    cJSON_AddNumberToObject(json, "rounds", config->rounds);
    cJSON_AddNumberToObject(json, "target_accuracy", config->target_accuracy);
    cJSON_AddNumberToObject(json, "clients", r->num_clients);
    cJSON_AddNumberToObject(json, "classes", r->classes);
    cJSON_AddNumberToObject(json, "public_size", (double)r->public_count);
    cJSON_AddNumberToObject(json, "num_params", (double)r->num_params);
    cJSON_AddNumberToObject(json, "kd_temperature", config->kd.temperature);
    cJSON_AddNumberToObject(json, "kd_epochs", config->kd.epochs);
    cJSON_AddStringToObject(json, "kd_ensemble", config->kd.ensemble);
    cJSON_AddNumberToObject(json, "pretrain_epochs", config->pretrain.epochs);
    cJSON *starts = cJSON_AddArrayToObject(json, "starts");
    for (int s = 0; starts && s < KD_START_COUNT; s++) {
        cJSON *item = start_json(config, r, s);
        if (!item) break;
        cJSON_AddItemToArray(starts, item);
    }
    cJSON_AddNumberToObject(json, "pretrain_seconds", r->pretrain_seconds);
    cJSON_AddNumberToObject(json, "wall_seconds", r->wall_seconds);
    if (!starts || cJSON_GetArraySize(starts) != KD_START_COUNT) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

/* Empty cells for values that do not exist (target not reached). */
static void csv_count(FILE *file, uint64_t value)
{
    if (value) fprintf(file, "%llu,", (unsigned long long)value);
    else fputc(',', file);
}

static void csv_number(FILE *file, double value)
{
    if (isfinite(value)) fprintf(file, "%.17g,", value);
    else fputc(',', file);
}

/* Columns before the `*_seconds` ones do not depend on the machine. */
static fedkd_status write_csv(const fedkd_config *config, const kd_start_report *r)
{
    char path[700], temporary[720];
    snprintf(path, sizeof path, "%s/kd_start.csv", config->run.dir);
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    FILE *file = fopen(temporary, "w");
    if (!file) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", temporary, strerror(errno));
    fprintf(file, "start,run_dir,init_model,round0_accuracy,rounds_run,rounds_to_target,"
                  "fedavg_bytes_to_target,consolidation_bytes,bytes_to_target,"
                  "reduction_rounds_percent,reduction_bytes_percent,final_accuracy,"
                  "best_accuracy,start_params_checksum,params_checksum,consolidation_rounds,"
                  "total_rounds,reduction_total_rounds_percent,consolidation_seconds,"
                  "fedavg_seconds,wall_seconds\n");
    for (int s = 0; s < KD_START_COUNT; s++) {
        const kd_start_outcome *o = &r->starts[s];
        fprintf(file, "%s,%s,%s,%.17g,%d,", kd_start_names[s],
                relative(o->run_dir, config->run.dir), relative(o->init_model, config->run.dir),
                o->round0_accuracy, o->run.rounds_run);
        csv_count(file, (uint64_t)o->run.rounds_to_target);
        csv_count(file, fedavg_bytes_to_target(o));
        fprintf(file, "%llu,", (unsigned long long)o->consolidation_bytes);
        csv_count(file, total_bytes_to_target(o));
        csv_number(file, s == KD_START_RANDOM ? (double)NAN : rounds_reduction(r, s));
        csv_number(file, s == KD_START_RANDOM ? (double)NAN : bytes_reduction(r, s));
        fprintf(file, "%.17g,%.17g,%016llx,%016llx,%d,", o->run.final_accuracy,
                o->run.best_accuracy, (unsigned long long)o->start_checksum,
                (unsigned long long)o->run.params_checksum, o->consolidation_rounds);
        csv_count(file, (uint64_t)total_rounds(o));
        csv_number(file, s == KD_START_RANDOM ? (double)NAN : total_rounds_reduction(r, s));
        fprintf(file, "%.6f,%.6f,%.6f\n", o->consolidation_seconds,
                o->run.wall_seconds, o->consolidation_seconds + o->run.wall_seconds);
    }
    int failed = ferror(file);
    if (fclose(file) != 0) failed = 1;
    if (failed || rename(temporary, path) != 0) {
        int error = errno;
        remove(temporary);
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: write failed: %s", path, strerror(error));
    }
    return FEDKD_OK;
}

/* summary.json's own fields: one flat name per start and outcome. */
static cJSON *summary_fields(const kd_start_report *r)
{
    cJSON *extra = cJSON_CreateObject();
    if (!extra) return NULL;
    char name[96];
    for (int s = 0; s < KD_START_COUNT; s++) {
        const kd_start_outcome *o = &r->starts[s];
        const char *start = kd_start_names[s];
        snprintf(name, sizeof name, "rounds_to_target_%s", start);
        add_count(extra, name, (uint64_t)o->run.rounds_to_target);
        snprintf(name, sizeof name, "bytes_to_target_%s", start);
        add_count(extra, name, total_bytes_to_target(o));
        snprintf(name, sizeof name, "consolidation_bytes_%s", start);
        cJSON_AddNumberToObject(extra, name, (double)o->consolidation_bytes);
        snprintf(name, sizeof name, "consolidation_rounds_%s", start);
        cJSON_AddNumberToObject(extra, name, o->consolidation_rounds);
        snprintf(name, sizeof name, "total_rounds_%s", start);
        add_count(extra, name, (uint64_t)total_rounds(o));
        snprintf(name, sizeof name, "round0_accuracy_%s", start);
        cJSON_AddNumberToObject(extra, name, o->round0_accuracy);
        snprintf(name, sizeof name, "final_accuracy_%s", start);
        cJSON_AddNumberToObject(extra, name, o->run.final_accuracy);
        snprintf(name, sizeof name, "best_accuracy_%s", start);
        cJSON_AddNumberToObject(extra, name, o->run.best_accuracy);
        snprintf(name, sizeof name, "wall_seconds_%s", start);
        cJSON_AddNumberToObject(extra, name, o->consolidation_seconds + o->run.wall_seconds);
    }
    for (int s = KD_START_AVERAGE; s < KD_START_COUNT; s++) {
        snprintf(name, sizeof name, "reduction_rounds_%s_percent", kd_start_names[s]);
        add_number(extra, name, rounds_reduction(r, s));
        snprintf(name, sizeof name, "reduction_total_rounds_%s_percent", kd_start_names[s]);
        add_number(extra, name, total_rounds_reduction(r, s));
        snprintf(name, sizeof name, "reduction_bytes_%s_percent", kd_start_names[s]);
        add_number(extra, name, bytes_reduction(r, s));
    }
    cJSON_AddNumberToObject(extra, "pretrain_seconds", r->pretrain_seconds);
    return extra;
}

static void format_mb(char *out, size_t size, uint64_t bytes, int exists)
{
    if (exists) snprintf(out, size, "%.2f", (double)bytes / 1e6);
    else snprintf(out, size, "-");
}

static void print_table(const fedkd_config *config, const kd_start_report *r)
{
    fedkd_log_info("kd-start: %s from three starts, %d clients, target accuracy %.2f within "
                   "%d rounds",
                   config->algorithm, r->num_clients, config->target_accuracy, config->rounds);
    fedkd_log_info("  start    round-0  rounds-to-target  fewer-rounds  total-rounds  fewer-total  "
                   "consolidation-MB  fedavg-MB  total-MB  fewer-bytes   final    best  seconds");
    for (int s = 0; s < KD_START_COUNT; s++) {
        const kd_start_outcome *o = &r->starts[s];
        int reached = o->run.rounds_to_target > 0;
        char rounds[16], fewer[16], fewer_bytes[16], consolidation[24], fedavg[24], total[24];
        char all_rounds[16], fewer_all[16];
        if (reached) snprintf(rounds, sizeof rounds, "%d", o->run.rounds_to_target);
        else snprintf(rounds, sizeof rounds, "> %d", o->run.rounds_run);
        if (reached) snprintf(all_rounds, sizeof all_rounds, "%d", total_rounds(o));
        else snprintf(all_rounds, sizeof all_rounds, "> %d", o->consolidation_rounds + o->run.rounds_run);
        double by_all = total_rounds_reduction(r, s);
        if (s != KD_START_RANDOM && isfinite(by_all))
            snprintf(fewer_all, sizeof fewer_all, "%.1f%%", by_all);
        else snprintf(fewer_all, sizeof fewer_all, "-");
        double by_rounds = rounds_reduction(r, s), by_bytes = bytes_reduction(r, s);
        if (s != KD_START_RANDOM && isfinite(by_rounds))
            snprintf(fewer, sizeof fewer, "%.1f%%", by_rounds);
        else snprintf(fewer, sizeof fewer, "-");
        if (s != KD_START_RANDOM && isfinite(by_bytes))
            snprintf(fewer_bytes, sizeof fewer_bytes, "%.1f%%", by_bytes);
        else snprintf(fewer_bytes, sizeof fewer_bytes, "-");
        format_mb(consolidation, sizeof consolidation, o->consolidation_bytes, 1);
        format_mb(fedavg, sizeof fedavg, fedavg_bytes_to_target(o), reached);
        format_mb(total, sizeof total, total_bytes_to_target(o), reached);
        fedkd_log_info("  %-7s  %7.4f  %16s  %12s  %12s  %11s  %16s  %9s  %8s  %11s  %6.4f  %6.4f  "
                       "%7.1f",
                       kd_start_names[s], o->round0_accuracy, rounds, fewer, all_rounds, fewer_all,
                       consolidation,
                       fedavg, total, fewer_bytes, o->run.final_accuracy, o->run.best_accuracy,
                       o->consolidation_seconds + o->run.wall_seconds);
    }
    fedkd_log_info("kd-start: pre-training %.1fs, whole run %.1fs; tables in %s/kd_start.json "
                   "and kd_start.csv",
                   r->pretrain_seconds, r->wall_seconds, config->run.dir);
}

fedkd_status kd_start_write(const fedkd_config *config, const kd_start_report *report,
                            const char *status_text)
{
    fedkd_run_result overall;
    kd_start_overall(report, &overall);
    int completed = strcmp(status_text, "completed") == 0;
    fedkd_status status = fedkd_make_directories(config->run.dir);
    cJSON *extra = NULL;
    if (!status && completed) {
        cJSON *json = report_json(config, report);
        status = json ? fedkd_write_json_file(config->run.dir, "kd_start.json", json)
                      : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing kd_start.json");
        cJSON_Delete(json);
        if (!status) status = write_csv(config, report);
        if (!status && !(extra = summary_fields(report)))
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing summary.json");
    }
    if (!status)
        status = fedkd_summary_write_run(config, status_text, &overall,
                                        completed && report->starts[KD_START_KD].ran, extra);
    cJSON_Delete(extra);
    if (!status && completed) print_table(config, report);
    return status;
}
