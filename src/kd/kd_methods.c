/* The KD methods between pre-trained models (../shared/METHODS.md), one row
 * each in a table found by name. Every method distils through the local
 * training loop (fedkd_train_local) with a frozen-teacher hook, except deep
 * mutual learning, whose peers all learn (dml.c). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/kd/kd.h"
#include "fedkd/train/train.h"
#include "kd/kd_private.h"

/* ---- settings ------------------------------------------------------------ */

fedkd_kd_settings fedkd_kd_default_settings(void)
{
    fedkd_kd_settings s;
    memset(&s, 0, sizeof s);
    s.epochs = 1;
    s.batch_size = 64;
    s.seed = 0;
    s.optimizer = fedkd_optimizer_default_settings();
    s.optimizer.lr = 0.05f;
    s.temperature = 1.0f;
    s.weight = 0.5f;
    const float temperatures[] = {1.0f, 2.0f, 4.0f, 8.0f, 16.0f};
    const float weights[] = {0.1f, 0.25f, 0.5f, 0.75f, 0.9f};
    s.num_temperatures = 5;
    s.num_weights = 5;
    memcpy(s.temperature_grid, temperatures, sizeof temperatures);
    memcpy(s.weight_grid, weights, sizeof weights);
    s.validation_fraction = 0.1;
    s.ensemble_logits = 0;
    s.peers = 2;
    s.confidence = FEDKD_KD_CONFIDENCE_SUPERVISED;
    s.logit_batch = 256;
    s.validation = FEDKD_KD_LOCAL;
    s.transfer = FEDKD_KD_LOCAL;
    s.validation_size = 0;
    return s;
}

fedkd_status fedkd_kd_parse_numbers(const char *text, const char *key, float *values, int max,
                                    int *count, double low, int low_exclusive, double high)
{
    char expected[96];
    if (low_exclusive)
        snprintf(expected, sizeof expected, "numbers > %g", low);
    else
        snprintf(expected, sizeof expected, "numbers in [%g, %g]", low, high);
    *count = 0;
    const char *p = text;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        char *end = NULL;
        errno = 0;
        double x = strtod(p, &end);
        int parsed = end != p && errno == 0 && isfinite(x);
        const char *after = parsed ? end : p;
        while (isspace((unsigned char)*after)) after++;
        int in_range = parsed && (low_exclusive ? x > low : x >= low) && x <= high;
        if (!parsed || !in_range || (*after != ',' && *after != '\0'))
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "config key `%s`: expected %s separated by commas, got \"%s\"", key,
                              expected, text);
        if (*count >= max)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "config key `%s`: expected at most %d values, got more in \"%s\"",
                              key, max, text);
        values[(*count)++] = (float)x;
        if (*after == '\0') break;
        p = after + 1;
    }
    return FEDKD_OK;
}

fedkd_status fedkd_kd_settings_from_config(const fedkd_config *config, fedkd_kd_settings *out)
{
    fedkd_kd_settings s = fedkd_kd_default_settings();
    s.epochs = config->kd.epochs;
    s.batch_size = config->local.batch_size;
    s.seed = config->seed;
    s.optimizer = fedkd_train_optimizer_settings(config);
    /* The config table checks these for files and --set; a config built in
     * code is checked here too. */
    if (!(config->kd.temperature > 0.0))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `kd.temperature`: expected a number > 0, "
                          "got %g", config->kd.temperature);
    if (!(config->kd.weight >= 0.0 && config->kd.weight <= 1.0))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `kd.weight`: expected a number in "
                          "[0, 1], got %g", config->kd.weight);
    s.temperature = (float)config->kd.temperature;
    s.weight = (float)config->kd.weight;
    fedkd_status status = fedkd_kd_parse_numbers(config->kd.temperature_grid,
                                                 "kd.temperature_grid", s.temperature_grid,
                                                 FEDKD_KD_MAX_GRID, &s.num_temperatures, 0.0, 1,
                                                 HUGE_VAL);
    if (status) return status;
    status = fedkd_kd_parse_numbers(config->kd.weight_grid, "kd.weight_grid", s.weight_grid,
                                    FEDKD_KD_MAX_GRID, &s.num_weights, 0.0, 0, 1.0);
    if (status) return status;
    s.validation_fraction = config->kd.validation_fraction;
    s.ensemble_logits = strcmp(config->kd.ensemble, "logits") == 0;
    s.peers = config->kd.peers;
    /* The table has checked the choices of files and --set; a config built
     * in code is checked here. */
    if (strcmp(config->kd.confidence, "supervised") == 0)
        s.confidence = FEDKD_KD_CONFIDENCE_SUPERVISED;
    else if (strcmp(config->kd.confidence, "unsupervised") == 0)
        s.confidence = FEDKD_KD_CONFIDENCE_UNSUPERVISED;
    else
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `kd.confidence`: expected \"supervised\" "
                          "or \"unsupervised\", got \"%s\"", config->kd.confidence);
    const char *places[2] = {config->kd.validation, config->kd.transfer};
    const char *place_keys[2] = {"kd.validation", "kd.transfer"};
    fedkd_kd_place *place_out[2] = {&s.validation, &s.transfer};
    for (int i = 0; i < 2; i++) {
        if (strcmp(places[i], "local") == 0) *place_out[i] = FEDKD_KD_LOCAL;
        else if (strcmp(places[i], "public") == 0) *place_out[i] = FEDKD_KD_PUBLIC;
        else
            return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `%s`: expected \"local\" or "
                              "\"public\", got \"%s\"", place_keys[i], places[i]);
    }
    s.validation_size = config->kd.validation_size;
    if (config->eval_batch_size > 0) s.logit_batch = config->eval_batch_size;
    *out = s;
    return FEDKD_OK;
}

/* ---- helpers --------------------------------------------------------------- */

fedkd_status fedkd_kd_compute_logits(const fedkd_model_spec *spec, const float *params,
                                     const fedkd_dataset *data, int max_batch, float **logits)
{
    *logits = NULL;
    if (fedkd_dataset_sample_floats(data) != fedkd_shape_size(spec->input))
        return FEDKD_FAIL(FEDKD_ERR_INVALID,
                          "teacher logits: samples of %s have %zu features, the model expects %zu",
                          data->origin, fedkd_dataset_sample_floats(data),
                          fedkd_shape_size(spec->input));
    fedkd_model *model = NULL;
    fedkd_status status = fedkd_model_create(&model, spec, max_batch > 0 ? max_batch : 1);
    if (status) return status;
    size_t classes = (size_t)spec->num_classes;
    float *out = fedkd_alloc((data->count ? data->count : 1) * classes * sizeof(float));
    if (!out) {
        fedkd_model_destroy(&model);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the teacher logits of %s",
                          data->origin);
    }
    memcpy(model->params, params, model->num_params * sizeof(float));
    size_t sample = fedkd_dataset_sample_floats(data);
    for (size_t first = 0; first < data->count; first += (size_t)model->max_batch) {
        size_t left = data->count - first;
        int count = left < (size_t)model->max_batch ? (int)left : model->max_batch;
        const float *z = fedkd_model_forward(model, data->features + first * sample, count);
        memcpy(out + first * classes, z, (size_t)count * classes * sizeof(float));
    }
    fedkd_model_destroy(&model);
    *logits = out;
    return FEDKD_OK;
}

void fedkd_kd_partition_weights(const uint32_t *student_histogram, const fedkd_kd_teacher *teachers,
                                int num_teachers, int classes, float weight, float *class_weight)
{
    for (int k = 0; k < classes; k++) {
        double teacher_count = 0.0;
        for (int t = 0; t < num_teachers; t++) teacher_count += (double)teachers[t].histogram[k];
        if (num_teachers > 0) teacher_count /= (double)num_teachers;
        class_weight[k] = teacher_count > (double)student_histogram[k] ? weight : 0.0f;
    }
}

/* ---- frozen teachers --------------------------------------------------------- */

typedef struct frozen_teachers {
    const fedkd_kd_job *job;
    int ensemble_logits;
    const float *class_weight;  /* (classes) class-coverage, or NULL */
    int classes;
    float *row;                 /* (classes) scratch */
    double *sum;                /* (classes) */
} frozen_teachers;

/* The mean over teachers is summed in double: n identical teachers then
 * give exactly the single teacher's distribution. */
static fedkd_status frozen_soft_targets(void *context, const uint32_t *rows, int count,
                                        const float *batch_features, float temperature,
                                        float *probs, float *sample_weight)
{
    (void)batch_features;
    frozen_teachers *f = context;
    const fedkd_kd_job *job = f->job;
    size_t classes = (size_t)f->classes;
    int n = job->num_teachers;
    for (int i = 0; i < count; i++) {
        size_t r = rows[i];
        float *p = probs + (size_t)i * classes;
        for (size_t c = 0; c < classes; c++) f->sum[c] = 0.0;
        for (int t = 0; t < n; t++) {
            const float *z = job->teachers[t].logits + r * classes;
            if (f->ensemble_logits) {
                for (size_t c = 0; c < classes; c++) f->sum[c] += (double)z[c];
            } else {
                fedkd_softmax(z, f->row, 1, (int)classes, temperature);
                for (size_t c = 0; c < classes; c++) f->sum[c] += (double)f->row[c];
            }
        }
        if (f->ensemble_logits) {
            for (size_t c = 0; c < classes; c++) f->row[c] = (float)(f->sum[c] / n);
            fedkd_softmax(f->row, p, 1, (int)classes, temperature);
        } else {
            for (size_t c = 0; c < classes; c++) p[c] = (float)(f->sum[c] / n);
        }
        if (f->class_weight) sample_weight[i] = f->class_weight[job->transfer->labels[r]];
    }
    return FEDKD_OK;
}

fedkd_status kd_run_frozen(const fedkd_kd_settings *s, const fedkd_kd_job *job,
                           float temperature, float weight, const float *class_weight,
                           long *steps)
{
    int classes = fedkd_model_num_classes(job->student);
    fedkd_optimizer *optimizer = NULL;
    frozen_teachers f = {.job = job, .ensemble_logits = s->ensemble_logits,
                         .class_weight = class_weight, .classes = classes};
    f.row = malloc((size_t)classes * sizeof *f.row);
    f.sum = malloc((size_t)classes * sizeof *f.sum);
    fedkd_status status = FEDKD_OK;
    if (!f.row || !f.sum) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for teacher targets");
        goto done;
    }
    status = fedkd_optimizer_create(&optimizer, &s->optimizer, job->student->num_params);
    if (status) goto done;
    fedkd_teacher teacher = {.soft_targets = frozen_soft_targets, .context = &f};
    fedkd_train_settings train = fedkd_train_default_settings();
    train.epochs = s->epochs;
    train.batch_size = s->batch_size;
    train.seed = s->seed;
    train.stream_a = (uint64_t)job->student_client;
    train.stream_b = FEDKD_KD_STREAM;
    train.teacher = &teacher;
    train.kd_temperature = temperature;
    train.kd_weight = weight;
    fedkd_train_stats stats;
    status = fedkd_train_local(job->student, optimizer, job->transfer, &train, &stats);
    *steps += stats.steps;
done:
    fedkd_optimizer_destroy(&optimizer);
    free(f.row);
    free(f.sum);
    return status;
}

/* ---- the methods ------------------------------------------------------------ */

/* Vanilla and ensemble: fixed (T, a); they differ only in their teachers. */
static fedkd_status distil_fixed(const fedkd_kd_settings *s, const fedkd_kd_job *job,
                                 fedkd_kd_outcome *outcome)
{
    fedkd_status status = kd_check_teachers(job);
    if (status) return status;
    outcome->temperature = s->temperature;
    outcome->weight = s->weight;
    return kd_run_frozen(s, job, s->temperature, s->weight, NULL, &outcome->steps);
}

static fedkd_status distil_class_coverage(const fedkd_kd_settings *s, const fedkd_kd_job *job,
                                          fedkd_kd_outcome *outcome)
{
    fedkd_status status = kd_check_teachers(job);
    if (status) return status;
    int classes = fedkd_model_num_classes(job->student);
    float *class_weight = malloc((size_t)classes * sizeof *class_weight);
    if (!class_weight) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for class weights");
    fedkd_kd_partition_weights(job->student_histogram, job->teachers, job->num_teachers, classes,
                               s->weight, class_weight);
    outcome->temperature = s->temperature;
    outcome->weight = s->weight;
    status = kd_run_frozen(s, job, s->temperature, s->weight, class_weight, &outcome->steps);
    free(class_weight);
    return status;
}

/* DML: the student and the first K - 1 teachers start from their
 * pre-trained weights and learn together on the student's data. */
static fedkd_status distil_mutual(const fedkd_kd_settings *s, const fedkd_kd_job *job,
                                  fedkd_kd_outcome *outcome)
{
    int k = s->peers;
    if (k < 1 || job->num_teachers < k - 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `kd.peers`: %d peers need %d teachers for client %d, the "
                          "pairing gives %d",
                          k, k - 1, job->student_client, job->num_teachers);
    fedkd_model **models = calloc((size_t)k, sizeof *models);
    fedkd_optimizer **optimizers = calloc((size_t)k, sizeof *optimizers);
    fedkd_status status = FEDKD_OK;
    if (!models || !optimizers) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %d DML peers", k);
        goto done;
    }
    models[0] = job->student;
    for (int i = 1; i < k && !status; i++) {
        status = fedkd_model_create(&models[i], job->teachers[i - 1].spec, s->batch_size);
        if (!status)
            memcpy(models[i]->params, job->teachers[i - 1].params,
                   models[i]->num_params * sizeof(float));
    }
    for (int i = 0; i < k && !status; i++)
        status = fedkd_optimizer_create(&optimizers[i], &s->optimizer, models[i]->num_params);
    if (status) goto done;
    fedkd_train_settings train = fedkd_train_default_settings();
    train.epochs = s->epochs;
    train.batch_size = s->batch_size;
    train.seed = s->seed;
    train.stream_a = (uint64_t)job->student_client;
    train.stream_b = FEDKD_KD_STREAM;
    outcome->temperature = 1.0f;
    outcome->weight = NAN;
    outcome->num_peers = k;
    status = fedkd_train_mutual(models, optimizers, k, job->transfer, &train, &outcome->steps);
done:
    for (int i = 1; models && i < k; i++) fedkd_model_destroy(&models[i]);
    for (int i = 0; optimizers && i < k; i++) fedkd_optimizer_destroy(&optimizers[i]);
    free(models);
    free(optimizers);
    return status;
}


static const fedkd_kd_method vanilla_method = {
    "vanilla", "fixed T and weight (kd.temperature, kd.weight)", FEDKD_KD_TEACHERS_PAIRING,
    distil_fixed, FEDKD_KD_LABELS_FOR_CE, NULL, NULL};
static const fedkd_kd_method ensemble_method = {
    "ensemble", "every other client's model as teacher, combined per kd.ensemble",
    FEDKD_KD_TEACHERS_ALL_OTHERS, distil_fixed, FEDKD_KD_LABELS_FOR_CE, NULL, NULL};
static const fedkd_kd_method dml_method = {
    "dml", "deep mutual learning with kd.peers - 1 teachers as peers", FEDKD_KD_TEACHERS_PEERS,
    distil_mutual, FEDKD_KD_LABELS_ALWAYS, NULL, NULL};
static const fedkd_kd_method data_partitioning_method = {
    "data-partitioning",
    "each sample distilled from the more confident of the teacher and the frozen pre-KD "
    "student (kd.confidence)",
    FEDKD_KD_TEACHERS_PAIRING, kd_distil_data_partitioning, FEDKD_KD_LABELS_FOR_CONFIDENCE, NULL,
    NULL};
static const fedkd_kd_method class_coverage_method = {
    "class-coverage", "KD on classes the teachers saw more of than the student, CE elsewhere",
    FEDKD_KD_TEACHERS_PAIRING, distil_class_coverage, FEDKD_KD_LABELS_ALWAYS, NULL, NULL};

/* Tuned methods: the base method over the (T, a) grid. */
static fedkd_status distil_tuned_vanilla(const fedkd_kd_settings *s, const fedkd_kd_job *job,
                                         fedkd_kd_outcome *outcome)
{
    return fedkd_kd_distil_tuned(&vanilla_method, s, job, outcome);
}

static fedkd_status distil_tuned_ensemble(const fedkd_kd_settings *s, const fedkd_kd_job *job,
                                          fedkd_kd_outcome *outcome)
{
    return fedkd_kd_distil_tuned(&ensemble_method, s, job, outcome);
}

static fedkd_status distil_tuned_data_partitioning(const fedkd_kd_settings *s,
                                                   const fedkd_kd_job *job,
                                                   fedkd_kd_outcome *outcome)
{
    return fedkd_kd_distil_tuned(&data_partitioning_method, s, job, outcome);
}

static fedkd_status distil_tuned_class_coverage(const fedkd_kd_settings *s,
                                                const fedkd_kd_job *job,
                                                fedkd_kd_outcome *outcome)
{
    return fedkd_kd_distil_tuned(&class_coverage_method, s, job, outcome);
}

static const fedkd_kd_method tuned_method = {
    "tuned", "vanilla KD with T and weight chosen on the validation set (kd.validation)",
    FEDKD_KD_TEACHERS_PAIRING, distil_tuned_vanilla, FEDKD_KD_LABELS_FOR_CE, &vanilla_method,
    NULL};
static const fedkd_kd_method tuned_ensemble_method = {
    "tuned-ensemble", "ensemble KD with T and weight chosen on the validation set",
    FEDKD_KD_TEACHERS_ALL_OTHERS, distil_tuned_ensemble, FEDKD_KD_LABELS_FOR_CE,
    &ensemble_method, NULL};
static const fedkd_kd_method tuned_data_partitioning_method = {
    "tuned-data-partitioning", "data-partitioning KD with T and weight chosen on the validation set",
    FEDKD_KD_TEACHERS_PAIRING, distil_tuned_data_partitioning, FEDKD_KD_LABELS_FOR_CONFIDENCE,
    &data_partitioning_method, NULL};
static const fedkd_kd_method tuned_class_coverage_method = {
    "tuned-class-coverage", "class-coverage KD with T and weight chosen on the validation set",
    FEDKD_KD_TEACHERS_PAIRING, distil_tuned_class_coverage, FEDKD_KD_LABELS_ALWAYS,
    &class_coverage_method, NULL};

/* Old names: rows of their own, so that results keep the name written. */
static const fedkd_kd_method partition_aware_method = {
    "partition-aware", "old name of class-coverage", FEDKD_KD_TEACHERS_PAIRING,
    distil_class_coverage, FEDKD_KD_LABELS_ALWAYS, NULL, &class_coverage_method};
static const fedkd_kd_method tuned_vanilla_method = {
    "tuned-vanilla", "the same as tuned", FEDKD_KD_TEACHERS_PAIRING, distil_tuned_vanilla,
    FEDKD_KD_LABELS_FOR_CE, &vanilla_method, &tuned_method};
static const fedkd_kd_method tuned_partition_aware_method = {
    "tuned-partition-aware", "old name of tuned-class-coverage", FEDKD_KD_TEACHERS_PAIRING,
    distil_tuned_class_coverage, FEDKD_KD_LABELS_ALWAYS, &class_coverage_method,
    &tuned_class_coverage_method};

const fedkd_kd_method *const fedkd_kd_methods[] = {
    &vanilla_method, &ensemble_method, &dml_method, &data_partitioning_method,
    &class_coverage_method, &tuned_method, &tuned_ensemble_method,
    &tuned_data_partitioning_method, &tuned_class_coverage_method, &partition_aware_method,
    &tuned_vanilla_method, &tuned_partition_aware_method, NULL};

const fedkd_kd_method *fedkd_kd_method_canonical(const fedkd_kd_method *method)
{
    return method->same_as ? method->same_as : method;
}

int fedkd_kd_method_needs_labels(const fedkd_kd_method *method, const fedkd_kd_settings *s)
{
    /* The CE term reads labels at any a < 1; a tuned method at any grid
     * weight below 1. */
    int ce = s->weight < 1.0f;
    if (method->tunes) {
        ce = 0;
        for (int i = 0; i < s->num_weights; i++) ce |= s->weight_grid[i] < 1.0f;
    }
    switch (method->labels) {
    case FEDKD_KD_LABELS_ALWAYS: return 1;
    case FEDKD_KD_LABELS_FOR_CONFIDENCE:
        return ce || s->confidence == FEDKD_KD_CONFIDENCE_SUPERVISED;
    case FEDKD_KD_LABELS_FOR_CE: return ce;
    }
    return 1;
}

fedkd_status fedkd_kd_method_find(const char *name, const fedkd_kd_method **out)
{
    for (int i = 0; fedkd_kd_methods[i]; i++)
        if (strcmp(fedkd_kd_methods[i]->name, name) == 0) {
            *out = fedkd_kd_methods[i];
            return FEDKD_OK;
        }
    /* The message lists current names only. */
    char known[512] = "";
    size_t used = 0;
    int listed = 0, total = 0;
    for (int i = 0; fedkd_kd_methods[i]; i++) total += !fedkd_kd_methods[i]->same_as;
    for (int i = 0; fedkd_kd_methods[i]; i++) {
        if (fedkd_kd_methods[i]->same_as) continue;
        listed++;
        const char *separator = listed == 1 ? "" : listed == total ? " or " : ", ";
        used = fedkd_appendf(known, sizeof known, used, "%s%s", separator,
                             fedkd_kd_methods[i]->name);
    }
    return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `kd.methods`: unknown method `%s`; expected %s",
                      name, known);
}

fedkd_status fedkd_kd_methods_parse(const char *list, const fedkd_kd_method **out, int max,
                                    int *count)
{
    *count = 0;
    const char *p = list;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        const char *last = end;
        while (last > p && isspace((unsigned char)last[-1])) last--;
        char name[64];
        size_t length = (size_t)(last - p);
        if (length == 0 || length >= sizeof name)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "config key `kd.methods`: expected method names separated by "
                              "commas, got \"%s\"", list);
        memcpy(name, p, length);
        name[length] = '\0';
        const fedkd_kd_method *method = NULL;
        fedkd_status status = fedkd_kd_method_find(name, &method);
        if (status) return status;
        for (int i = 0; i < *count; i++)
            if (fedkd_kd_method_canonical(out[i]) == fedkd_kd_method_canonical(method))
                return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                  "config key `kd.methods`: method `%s` is listed twice%s%s%s",
                                  name, out[i] != method ? " (as `" : "",
                                  out[i] != method ? out[i]->name : "",
                                  out[i] != method ? "`)" : "");
        if (*count >= max)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `kd.methods`: more than %d methods",
                              max);
        out[(*count)++] = method;
        if (*end == '\0') break;
        p = end + 1;
    }
    return FEDKD_OK;
}
