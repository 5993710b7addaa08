/* The kd-study's tables, written by rank 0 into run.dir:
 *   kd_results.csv / .json   one row per distillation run
 *   kd_summary.csv / .json   per method: runs, mean and standard deviation
 *                            of the gain, mean accuracy before and after,
 *                            the (T, weight) used (for tuned KD the most
 *                            frequent choice, and every choice with counts)
 *   summary.json             the file every mode leaves in run.dir, which a
 *                            sweep turns into its table's columns: the same
 *                            figures per method under "kd.<method>.*", and
 *                            the study's metric, best tuned against best
 *                            untuned method (best_tuned_*, best_untuned_*,
 *                            tuned_gain_ratio, tuned_improvement_percent)
 * Gain = after - before, test accuracies of the student. teacher_share is
 * data-partitioning KD's share of transfer samples routed to a teacher
 * (empty / null for the other methods). A run whose
 * training diverged has no after (empty cell, null) and run_diverged 1; a
 * method's figures are over its other runs, its diverged runs counted
 * apart ("diverged"). The standard
 * deviation is the sample one (n - 1), over the runs of one seed and one
 * partition; bench/kd_aggregate.py pools several runs. Files are written
 * to a temporary name and renamed. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/io/runlog.h"
#include "experiments/experiments_private.h"

typedef struct method_summary {
    int runs;     /* completed runs: the figures are over these */
    int diverged; /* runs whose training diverged, left out */
    double gain_mean, gain_std, before_mean, after_mean;
    double temperature, weight; /* the most frequent (T, weight) */
    int num_choices;
    double *choice_t, *choice_a; /* (runs) distinct pairs, most frequent first */
    int *choice_count;
    double teacher_share_mean;   /* data-partitioning: over completed runs; NaN otherwise */
} method_summary;

/* The study's metric within one run: the best mean gain among tuned
 * methods against the best among untuned ones (methods with completed runs
 * only). ratio = tuned / untuned and improvement = 100 (ratio - 1) percent
 * are defined only when the best untuned gain is > 0 (else NaN: null). */
typedef struct tuning_comparison {
    int tuned, untuned;          /* method indices, -1: none */
    double tuned_gain, untuned_gain, ratio, improvement_percent;
} tuning_comparison;

static tuning_comparison compare_tuning(const fedkd_kd_method *const *methods, int num_methods,
                                        const method_summary *summaries)
{
    tuning_comparison c = {-1, -1, NAN, NAN, NAN, NAN};
    for (int m = 0; m < num_methods; m++) {
        double gain = summaries[m].gain_mean;
        if (summaries[m].runs == 0 || !isfinite(gain)) continue;
        int *best = methods[m]->tunes ? &c.tuned : &c.untuned;
        if (*best < 0 || gain > summaries[*best].gain_mean) *best = m;
    }
    if (c.tuned >= 0) c.tuned_gain = summaries[c.tuned].gain_mean;
    if (c.untuned >= 0) c.untuned_gain = summaries[c.untuned].gain_mean;
    if (c.tuned >= 0 && c.untuned >= 0 && c.untuned_gain > 0.0) {
        c.ratio = c.tuned_gain / c.untuned_gain;
        c.improvement_percent = 100.0 * (c.tuned_gain - c.untuned_gain) / c.untuned_gain;
    }
    return c;
}

static void format_teachers(const kd_study_row *row, char *out, size_t out_size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int t = 0; t < row->num_teachers && used < out_size; t++) {
        int n = snprintf(out + used, out_size - used, "%s%d", t ? ";" : "", row->teachers[t]);
        if (n > 0) used += (size_t)n;
    }
}

/* A run whose training diverged has no accuracy after KD. */
static int run_diverged(const kd_study_row *r)
{
    return isnan(r->after);
}

/* NaN-aware equality for (T, weight) pairs. */
static int same_value(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

static fedkd_status summarise(const kd_study_row *rows, int num_rows, int method,
                              method_summary *m)
{
    memset(m, 0, sizeof *m);
    for (int j = 0; j < num_rows; j++)
        if (rows[j].method == method) {
            if (run_diverged(&rows[j])) m->diverged++;
            else m->runs++;
        }
    int total = m->runs + m->diverged;
    if (total == 0) return FEDKD_OK;
    m->choice_t = malloc((size_t)total * sizeof(double));
    m->choice_a = malloc((size_t)total * sizeof(double));
    m->choice_count = calloc((size_t)total, sizeof(int));
    if (!m->choice_t || !m->choice_a || !m->choice_count)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory summarising the kd-study");
    /* The (T, weight) choices of the completed runs; when every run
     * diverged, of those (a fixed method's T and weight are still known). */
    int choices_of_diverged = m->runs == 0;
    double sum = 0.0, before = 0.0, after = 0.0, share = 0.0;
    int shares = 0;
    for (int j = 0; j < num_rows; j++) {
        const kd_study_row *r = &rows[j];
        if (r->method != method || run_diverged(r) != choices_of_diverged) continue;
        if (!choices_of_diverged) {
            sum += r->after - r->before;
            before += r->before;
            after += r->after;
            if (isfinite(r->teacher_share)) {
                share += r->teacher_share;
                shares++;
            }
        }
        int k = 0;
        while (k < m->num_choices &&
               !(same_value(m->choice_t[k], r->temperature) && same_value(m->choice_a[k], r->weight)))
            k++;
        if (k == m->num_choices) {
            m->choice_t[k] = r->temperature;
            m->choice_a[k] = r->weight;
            m->num_choices++;
        }
        m->choice_count[k]++;
    }
    m->gain_mean = m->runs ? sum / m->runs : (double)NAN;
    m->before_mean = m->runs ? before / m->runs : (double)NAN;
    m->after_mean = m->runs ? after / m->runs : (double)NAN;
    m->teacher_share_mean = shares ? share / shares : (double)NAN;
    double squares = 0.0;
    for (int j = 0; j < num_rows; j++)
        if (rows[j].method == method && !run_diverged(&rows[j])) {
            double d = rows[j].after - rows[j].before - m->gain_mean;
            squares += d * d;
        }
    m->gain_std = m->runs > 1 ? sqrt(squares / (m->runs - 1)) : m->runs ? 0.0 : (double)NAN;
    /* Most frequent first; ties: smaller T, then smaller weight. */
    for (int i = 1; i < m->num_choices; i++)
        for (int k = i; k > 0; k--) {
            int c0 = m->choice_count[k - 1], c1 = m->choice_count[k];
            double t0 = m->choice_t[k - 1], t1 = m->choice_t[k];
            double a0 = m->choice_a[k - 1], a1 = m->choice_a[k];
            int swap = c1 > c0 || (c1 == c0 && (t1 < t0 || (t1 == t0 && a1 < a0)));
            if (!swap) break;
            m->choice_count[k - 1] = c1, m->choice_count[k] = c0;
            m->choice_t[k - 1] = t1, m->choice_t[k] = t0;
            m->choice_a[k - 1] = a1, m->choice_a[k] = a0;
        }
    m->temperature = m->choice_t[0];
    m->weight = m->choice_a[0];
    return FEDKD_OK;
}

static void free_summary(method_summary *m)
{
    free(m->choice_t);
    free(m->choice_a);
    free(m->choice_count);
}

static void add_number_or_null(cJSON *object, const char *name, double value)
{
    if (isfinite(value)) cJSON_AddNumberToObject(object, name, value);
    else cJSON_AddNullToObject(object, name);
}

/* "%g" of a finite value, "" otherwise (CSV cells of values that do not apply). */
static void format_cell(double value, const char *format, char *out, size_t out_size)
{
    if (isfinite(value)) snprintf(out, out_size, format, value);
    else out[0] = '\0';
}

static FILE *open_temporary(const char *dir, const char *name, char *path, size_t path_size,
                            char *temporary, size_t temporary_size)
{
    snprintf(path, path_size, "%s/%s", dir, name);
    snprintf(temporary, temporary_size, "%s/%s.tmp", dir, name);
    return fopen(temporary, "w");
}

static fedkd_status close_and_rename(FILE *file, const char *path, const char *temporary)
{
    int failed = ferror(file);
    if (fclose(file) != 0) failed = 1;
    if (failed) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: write failed: %s", temporary, strerror(errno));
    if (rename(temporary, path) != 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot rename %s into place: %s", path, temporary,
                          strerror(errno));
    return FEDKD_OK;
}

static fedkd_status write_results_csv(const fedkd_config *config, const char *scheme,
                                      const fedkd_kd_method *const *methods,
                                      const kd_study_row *rows, int num_rows)
{
    char path[700], temporary[710], teachers[4096], t[32], a[32], v[32], after[32], gain[32];
    char share[32];
    FILE *file = open_temporary(config->run.dir, "kd_results.csv", path, sizeof path, temporary,
                                sizeof temporary);
    if (!file) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", temporary, strerror(errno));
    fprintf(file, "seed,scheme,method,student,teachers,temperature,weight,before,after,gain,"
                  "validation_accuracy,peers,steps,seconds,diverged,run_diverged,teacher_share\n");
    for (int j = 0; j < num_rows; j++) {
        const kd_study_row *r = &rows[j];
        format_teachers(r, teachers, sizeof teachers);
        format_cell(r->temperature, "%g", t, sizeof t);
        format_cell(r->weight, "%g", a, sizeof a);
        format_cell(r->validation, "%.6f", v, sizeof v);
        format_cell(r->after, "%.6f", after, sizeof after);
        format_cell(r->after - r->before, "%.6f", gain, sizeof gain);
        format_cell(r->teacher_share, "%.6f", share, sizeof share);
        fprintf(file, "%llu,%s,%s,%d,%s,%s,%s,%.6f,%s,%s,%s,%d,%ld,%.3f,%d,%d,%s\n",
                (unsigned long long)config->seed, scheme, methods[r->method]->name, r->student,
                teachers, t, a, r->before, after, gain, v, r->peers, r->steps, r->seconds,
                r->diverged, run_diverged(r), share);
    }
    return close_and_rename(file, path, temporary);
}

static fedkd_status write_summary_csv(const fedkd_config *config, const char *scheme,
                                      const fedkd_kd_method *const *methods, int num_methods,
                                      const method_summary *summaries)
{
    char path[700], temporary[710], t[32], a[32], figures[4][32], share[32];
    FILE *file = open_temporary(config->run.dir, "kd_summary.csv", path, sizeof path, temporary,
                                sizeof temporary);
    if (!file) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", temporary, strerror(errno));
    fprintf(file, "seed,scheme,method,runs,temperature,weight,before_mean,after_mean,gain_mean,"
                  "gain_std,diverged,teacher_share\n");
    for (int m = 0; m < num_methods; m++) {
        const method_summary *s = &summaries[m];
        if (s->runs + s->diverged == 0) continue;
        format_cell(s->temperature, "%g", t, sizeof t);
        format_cell(s->weight, "%g", a, sizeof a);
        const double values[4] = {s->before_mean, s->after_mean, s->gain_mean, s->gain_std};
        for (int k = 0; k < 4; k++) format_cell(values[k], "%.6f", figures[k], sizeof figures[k]);
        format_cell(s->teacher_share_mean, "%.6f", share, sizeof share);
        fprintf(file, "%llu,%s,%s,%d,%s,%s,%s,%s,%s,%s,%d,%s\n", (unsigned long long)config->seed,
                scheme, methods[m]->name, s->runs, t, a, figures[0], figures[1], figures[2],
                figures[3], s->diverged, share);
    }
    return close_and_rename(file, path, temporary);
}

static void add_run_context(cJSON *json, const fedkd_config *config, const char *scheme)
{
    cJSON_AddNumberToObject(json, "seed", (double)config->seed);
    cJSON_AddStringToObject(json, "scheme", scheme);
    cJSON_AddStringToObject(json, "pairs", config->kd.pairs);
    cJSON_AddNumberToObject(json, "clients", config->clients.count);
    cJSON_AddNumberToObject(json, "kd_epochs", config->kd.epochs);
    cJSON_AddNumberToObject(json, "pretrain_epochs", config->pretrain.epochs);
    cJSON_AddStringToObject(json, "transfer", config->kd.transfer);
    cJSON_AddStringToObject(json, "validation", config->kd.validation);
    cJSON_AddStringToObject(json, "confidence", config->kd.confidence);
}

/* The tuning comparison's fields, into kd_summary.json and summary.json. */
static void add_tuning_comparison(cJSON *json, const fedkd_kd_method *const *methods,
                                  const tuning_comparison *c)
{
    if (c->tuned >= 0) cJSON_AddStringToObject(json, "best_tuned_method", methods[c->tuned]->name);
    else cJSON_AddNullToObject(json, "best_tuned_method");
    add_number_or_null(json, "best_tuned_gain", c->tuned_gain);
    if (c->untuned >= 0)
        cJSON_AddStringToObject(json, "best_untuned_method", methods[c->untuned]->name);
    else cJSON_AddNullToObject(json, "best_untuned_method");
    add_number_or_null(json, "best_untuned_gain", c->untuned_gain);
    add_number_or_null(json, "tuned_gain_ratio", c->ratio);
    add_number_or_null(json, "tuned_improvement_percent", c->improvement_percent);
}

static fedkd_status write_results_json(const fedkd_config *config, const char *scheme,
                                       const fedkd_kd_method *const *methods,
                                       const kd_study_row *rows, int num_rows)
{
    cJSON *json = cJSON_CreateObject();
    add_run_context(json, config, scheme);
    cJSON *list = cJSON_AddArrayToObject(json, "runs");
    for (int j = 0; j < num_rows && list; j++) {
        const kd_study_row *r = &rows[j];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddItemToArray(list, item);
        cJSON_AddStringToObject(item, "method", methods[r->method]->name);
        cJSON_AddNumberToObject(item, "student", r->student);
        cJSON *teachers = cJSON_CreateIntArray(r->teachers, r->num_teachers);
        cJSON_AddItemToObject(item, "teachers", teachers);
        add_number_or_null(item, "temperature", r->temperature);
        add_number_or_null(item, "weight", r->weight);
        cJSON_AddNumberToObject(item, "before", r->before);
        add_number_or_null(item, "after", r->after);
        add_number_or_null(item, "gain", r->after - r->before);
        add_number_or_null(item, "validation_accuracy", r->validation);
        cJSON_AddNumberToObject(item, "peers", r->peers);
        cJSON_AddNumberToObject(item, "steps", (double)r->steps);
        cJSON_AddNumberToObject(item, "seconds", r->seconds);
        cJSON_AddNumberToObject(item, "diverged", r->diverged);
        cJSON_AddBoolToObject(item, "run_diverged", run_diverged(r));
        add_number_or_null(item, "teacher_share", r->teacher_share);
    }
    fedkd_status status = list ? fedkd_write_json_file(config->run.dir, "kd_results.json", json)
                               : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing kd_results.json");
    cJSON_Delete(json);
    return status;
}

static fedkd_status write_summary_json(const fedkd_config *config, const char *scheme,
                                       const fedkd_kd_method *const *methods, int num_methods,
                                       const method_summary *summaries,
                                       const tuning_comparison *comparison,
                                       const kd_study_totals *totals)
{
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "fedkd_sim_version", FEDKD_VERSION);
    cJSON_AddStringToObject(json, "status", "completed");
    add_run_context(json, config, scheme);
    cJSON *list = cJSON_AddArrayToObject(json, "methods");
    for (int m = 0; m < num_methods && list; m++) {
        const method_summary *s = &summaries[m];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddItemToArray(list, item);
        cJSON_AddStringToObject(item, "method", methods[m]->name);
        cJSON_AddBoolToObject(item, "tuned", methods[m]->tunes != NULL);
        cJSON_AddNumberToObject(item, "runs", s->runs);
        cJSON_AddNumberToObject(item, "diverged", s->diverged);
        add_number_or_null(item, "temperature", s->temperature);
        add_number_or_null(item, "weight", s->weight);
        add_number_or_null(item, "before_mean", s->before_mean);
        add_number_or_null(item, "after_mean", s->after_mean);
        add_number_or_null(item, "gain_mean", s->gain_mean);
        add_number_or_null(item, "gain_std", s->gain_std);
        add_number_or_null(item, "teacher_share", s->teacher_share_mean);
        cJSON *choices = cJSON_AddArrayToObject(item, "choices");
        for (int k = 0; k < s->num_choices && choices; k++) {
            cJSON *choice = cJSON_CreateObject();
            cJSON_AddItemToArray(choices, choice);
            add_number_or_null(choice, "temperature", s->choice_t[k]);
            add_number_or_null(choice, "weight", s->choice_a[k]);
            cJSON_AddNumberToObject(choice, "runs", s->choice_count[k]);
        }
    }
    add_tuning_comparison(json, methods, comparison);
    cJSON_AddNumberToObject(json, "teacher_bytes", (double)totals->teacher_bytes);
    cJSON_AddNumberToObject(json, "wire_bytes", (double)totals->wire_bytes);
    cJSON_AddNumberToObject(json, "wall_seconds", totals->wall_seconds);
    cJSON_AddItemToObject(json, "config", cJSON_Duplicate(config->json, 1));
    fedkd_status status = list ? fedkd_write_json_file(config->run.dir, "kd_summary.json", json)
                               : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing kd_summary.json");
    cJSON_Delete(json);
    return status;
}

/* One method's figures as a JSON object: the fields of kd_summary.json's
 * method entries, less the list of choices (a sweep's table wants scalars),
 * plus the share of runs that used the reported (T, weight). */
static cJSON *method_figures(const fedkd_kd_method *method, const method_summary *s)
{
    cJSON *item = cJSON_CreateObject();
    if (!item) return NULL;
    cJSON_AddNumberToObject(item, "tuned", method->tunes != NULL);
    cJSON_AddNumberToObject(item, "runs", s->runs);
    cJSON_AddNumberToObject(item, "diverged", s->diverged);
    add_number_or_null(item, "temperature", s->temperature);
    add_number_or_null(item, "weight", s->weight);
    cJSON_AddNumberToObject(item, "choice_share",
                            s->runs ? (double)s->choice_count[0] / s->runs : 0.0);
    add_number_or_null(item, "before_mean", s->before_mean);
    add_number_or_null(item, "after_mean", s->after_mean);
    add_number_or_null(item, "gain_mean", s->gain_mean);
    add_number_or_null(item, "gain_std", s->gain_std);
    add_number_or_null(item, "teacher_share", s->teacher_share_mean);
    return item;
}

/* summary.json. A sweep flattens nested objects into dotted column names,
 * so "kd": {"vanilla": {"gain_mean": ...}} becomes the column
 * kd.vanilla.gain_mean. A study of one method also puts that method's
 * gain and accuracies at the top level: a grid over kd.methods (one method
 * per point) then has every point's gain in one column, which is what a
 * heatmap over (T, weight) per method needs. Written after the kd_* tables:
 * a sweep that restarts takes a completed summary.json as proof that the
 * point finished. */
static fedkd_status write_run_summary(const fedkd_config *config, const char *scheme,
                                      const fedkd_kd_method *const *methods, int num_methods,
                                      const method_summary *summaries,
                                      const tuning_comparison *comparison,
                                      const kd_study_totals *totals)
{
    cJSON *json = fedkd_summary_new(config, "completed");
    if (!json) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing summary.json");
    cJSON_AddStringToObject(json, "scheme", scheme);
    int runs = 0, diverged = 0, reported = 0, only = -1;
    for (int m = 0; m < num_methods; m++) {
        runs += summaries[m].runs;
        diverged += summaries[m].diverged;
        if (summaries[m].runs + summaries[m].diverged > 0) {
            reported++;
            only = m;
        }
    }
    cJSON_AddNumberToObject(json, "runs", runs);
    cJSON_AddNumberToObject(json, "diverged", diverged);
    if (reported == 1) {
        const method_summary *s = &summaries[only];
        add_number_or_null(json, "before_mean", s->before_mean);
        add_number_or_null(json, "after_mean", s->after_mean);
        add_number_or_null(json, "gain_mean", s->gain_mean);
        add_number_or_null(json, "gain_std", s->gain_std);
    }
    cJSON *per_method = cJSON_AddObjectToObject(json, "kd");
    int complete = per_method != NULL;
    for (int m = 0; m < num_methods && complete; m++) {
        if (summaries[m].runs + summaries[m].diverged == 0) continue;
        cJSON *item = method_figures(methods[m], &summaries[m]);
        complete = item && cJSON_AddItemToObject(per_method, methods[m]->name, item);
        if (!complete) cJSON_Delete(item);
    }
    add_tuning_comparison(json, methods, comparison);
    cJSON_AddNumberToObject(json, "teacher_bytes_total", (double)totals->teacher_bytes);
    cJSON_AddNumberToObject(json, "wire_bytes_total", (double)totals->wire_bytes);
    cJSON_AddNumberToObject(json, "wall_seconds", totals->wall_seconds);
    if (!complete) {
        cJSON_Delete(json);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing summary.json");
    }
    return fedkd_summary_write(config, json);
}

static void print_summary(const fedkd_config *config, const char *scheme,
                          const fedkd_kd_method *const *methods, int num_methods,
                          const method_summary *summaries, const tuning_comparison *comparison,
                          const kd_study_totals *totals)
{
    char t[32], a[32], share[32];
    fedkd_log_info("kd-study %s, seed %llu, pairs %s: student test accuracy before and after KD",
                   scheme, (unsigned long long)config->seed, config->kd.pairs);
    fedkd_log_info("  %-23s %5s %6s %6s %8s %8s %9s %8s %8s %8s", "method", "runs", "T",
                   "weight", "before", "after", "gain", "std", "diverged", "teacher");
    for (int m = 0; m < num_methods; m++) {
        const method_summary *s = &summaries[m];
        if (s->runs + s->diverged == 0) continue;
        format_cell(s->temperature, "%g", t, sizeof t);
        format_cell(s->weight, "%g", a, sizeof a);
        if (!a[0]) snprintf(a, sizeof a, "-");
        format_cell(s->teacher_share_mean, "%.4f", share, sizeof share);
        if (!share[0]) snprintf(share, sizeof share, "-");
        fedkd_log_info("  %-23s %5d %6s %6s %8.4f %8.4f %+9.4f %8.4f %8d %8s", methods[m]->name,
                       s->runs, t, a, s->before_mean, s->after_mean, s->gain_mean, s->gain_std,
                       s->diverged, share);
    }
    if (comparison->tuned >= 0 && comparison->untuned >= 0) {
        char ratio[64];
        if (isfinite(comparison->ratio))
            snprintf(ratio, sizeof ratio, "ratio %.3f, %+.1f%%", comparison->ratio,
                     comparison->improvement_percent);
        else
            snprintf(ratio, sizeof ratio, "no ratio: the best untuned gain is not > 0");
        fedkd_log_info("best tuned %s %+.4f vs best untuned %s %+.4f: %s",
                       methods[comparison->tuned]->name, comparison->tuned_gain,
                       methods[comparison->untuned]->name, comparison->untuned_gain, ratio);
    }
    fedkd_log_info("teacher weights sent to students: %.3f MB (broadcasts moved %.3f MB); "
                   "%.1fs; tables in %s/kd_summary.csv and kd_results.csv",
                   (double)totals->teacher_bytes / 1e6, (double)totals->wire_bytes / 1e6,
                   totals->wall_seconds, config->run.dir);
}

fedkd_status kd_study_write(const fedkd_config *config, const fedkd_kd_method *const *methods,
                            int num_methods, const kd_study_row *rows, int num_rows,
                            const kd_study_totals *totals)
{
    char scheme[64];
    kd_scheme_label(config, scheme, sizeof scheme);
    method_summary *summaries = calloc((size_t)num_methods, sizeof *summaries);
    if (!summaries) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory summarising the kd-study");
    fedkd_status status = fedkd_make_directories(config->run.dir);
    for (int m = 0; m < num_methods && !status; m++)
        status = summarise(rows, num_rows, m, &summaries[m]);
    tuning_comparison comparison = compare_tuning(methods, num_methods, summaries);
    if (!status) status = write_results_csv(config, scheme, methods, rows, num_rows);
    if (!status) status = write_results_json(config, scheme, methods, rows, num_rows);
    if (!status) status = write_summary_csv(config, scheme, methods, num_methods, summaries);
    if (!status)
        status = write_summary_json(config, scheme, methods, num_methods, summaries, &comparison,
                                    totals);
    if (!status)
        status = write_run_summary(config, scheme, methods, num_methods, summaries, &comparison,
                                   totals);
    if (!status)
        print_summary(config, scheme, methods, num_methods, summaries, &comparison, totals);
    for (int m = 0; m < num_methods; m++) free_summary(&summaries[m]);
    free(summaries);
    return status;
}
