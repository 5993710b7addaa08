/* The KD-consolidated start (mode `kd-start`; include/fedkd/experiments/experiments.h).
 *
 * 1. Every rank loads the clients it hosts, with the public rows held out of
 *    the partition (rank 0 also loads the public and the test set), and
 *    pre-trains or reuses their models (pretrain.c). The reuse fingerprint
 *    hashes each client's samples as loaded, so models pre-trained on a
 *    partition that still held the public rows are trained again.
 * 2. Two consolidations, each one exact fixed-point reduction to rank 0:
 *    the sample-weighted average of the clients' weights (each uploads its
 *    weights), and the ensemble's soft targets on the public set (each
 *    uploads only its logits), which rank 0 distils into a fresh student.
 * 3. Rank 0 scores the three starts on the test set and saves the two
 *    consolidated ones in run.dir; the client data is freed.
 * 4. Three federations of config->algorithm, one per start, each in its own
 *    directory with its usual logs and checkpoints. Their config is this
 *    run's with run.dir and init.model changed. Their run options hold the
 *    public rows out of their partition too (FEDKD_CLIENTSET_PUBLIC), so
 *    all three train on exactly the data the models were pre-trained on.
 * 5. Rank 0 writes the comparison (kd_start_output.c).
 *
 * Every step depends only on the config and the random streams, and both
 * reductions are exact integer sums, so the starts, the federations and the
 * tables are bit-identical at any number of ranks. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/io/runlog.h"
#include "fedkd/io/model_file.h"
#include "experiments/experiments_private.h"
#include "experiments/kd_start_private.h"

const char *const kd_start_names[KD_START_COUNT] = {"random", "average", "kd"};
static const char *const start_files[KD_START_COUNT] = {"", "start-average.h5", "start-kd.h5"};

typedef struct pipeline {
    const fedkd_config *config;
    MPI_Comm comm;
    int rank, size;
    int resume_auto;
    kd_clients clients;
    kd_pretrained *models;        /* (clients.num_hosted) */
    float **logits;               /* (clients.num_hosted) each (public_count, classes) */
    float *targets;               /* rank 0: (public_count, classes) */
    size_t num_params;
    float *starts[KD_START_COUNT];/* rank 0: (num_params) the start models */
    kd_start_report report;
} pipeline;

/* ---- collectives ------------------------------------------------------------ */

static fedkd_status reduce_fixed(MPI_Comm comm, const int64_t *local, int64_t *sum, size_t n,
                                 const char *what)
{
    MPI_Request request;
    if (MPI_Ireduce(local, sum, (int)n, MPI_INT64_T, MPI_SUM, 0, comm, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ireduce of %s failed", what);
    return fedkd_comm_wait(&request, what);
}

/* Rank 0 takes the fixed-point sums (n) of every rank's `local`. The sizes
 * are the same on every rank, so a refusal is too. */
static fedkd_status allocate_sums(int rank, size_t n, const char *what, int64_t **local,
                                  int64_t **sum)
{
    *local = NULL;
    *sum = NULL;
    if (n > INT_MAX)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "kd-start: %s has %zu values, more than one MPI "
                          "reduction takes (%d); lower public.size", what, n, INT_MAX);
    *local = fedkd_alloc((n ? n : 1) * sizeof **local);
    if (rank == 0) *sum = fedkd_alloc((n ? n : 1) * sizeof **sum);
    if (!*local || (rank == 0 && !*sum))
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu values of %s", n, what);
    return FEDKD_OK;
}

fedkd_status kd_start_ensemble_targets(MPI_Comm comm, const float *const *logits, int num_hosted,
                                       int num_clients, size_t count, int classes,
                                       float temperature, int ensemble_logits, float *targets)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    size_t n = count * (size_t)classes;
    int64_t *local = NULL, *sum = NULL;
    float *row = malloc((size_t)classes * sizeof *row);
    fedkd_status status = allocate_sums(rank, n, "the ensemble's logits", &local, &sum);
    if (!status && !row) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for a logits row");
    for (int h = 0; h < num_hosted && !status; h++) {
        if (ensemble_logits) {
            status = fedkd_fixed_accumulate(local, logits[h], n, 1.0);
        } else {
            for (size_t i = 0; i < count && !status; i++) {
                fedkd_softmax(logits[h] + i * (size_t)classes, row, 1, classes, temperature);
                status = fedkd_fixed_accumulate(local + i * (size_t)classes, row,
                                                (size_t)classes, 1.0);
            }
        }
        if (status == FEDKD_ERR_NUMERIC) {
            char message[512];
            snprintf(message, sizeof message, "%s", fedkd_error_message());
            status = FEDKD_FAIL(status, "kd-start: a pre-trained model's logits on the public "
                                "set cannot be summed (%s)", message);
        }
    }
    /* Every rank must take part in the reduction, or none. */
    status = fedkd_comm_agree(comm, status);
    if (!status)
        status = fedkd_comm_agree(comm, reduce_fixed(comm, local, sum, n, "the ensemble's logits"));
    if (!status && rank == 0) {
        double scale = 1.0 / (double)num_clients;
        for (size_t i = 0; i < count; i++) {
            const int64_t *s = sum + i * (size_t)classes;
            float *out = targets + i * (size_t)classes;
            float *mean = ensemble_logits ? row : out;
            for (int c = 0; c < classes; c++)
                mean[c] = (float)(fedkd_fixed_to_double(s[c]) * scale);
            if (ensemble_logits) fedkd_softmax(row, out, 1, classes, temperature);
        }
    }
    fedkd_free(local);
    fedkd_free(sum);
    free(row);
    return status;
}

fedkd_status kd_start_average_params(MPI_Comm comm, const float *const *params,
                                     const double *weights, int num_hosted, size_t num_params,
                                     float *average)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    int64_t *local = NULL, *sum = NULL;
    fedkd_status status = allocate_sums(rank, num_params, "the model", &local, &sum);
    for (int h = 0; h < num_hosted && !status; h++) {
        status = fedkd_fixed_accumulate(local, params[h], num_params, weights[h]);
        if (status == FEDKD_ERR_NUMERIC) {
            char message[512];
            snprintf(message, sizeof message, "%s", fedkd_error_message());
            status = FEDKD_FAIL(status, "kd-start: a pre-trained model's weights cannot be "
                                "averaged (%s)", message);
        }
    }
    status = fedkd_comm_agree(comm, status);
    if (!status) status = fedkd_comm_agree(comm, reduce_fixed(comm, local, sum, num_params, "the average"));
    if (!status && rank == 0)
        for (size_t i = 0; i < num_params; i++) average[i] = (float)fedkd_fixed_to_double(sum[i]);
    fedkd_free(local);
    fedkd_free(sum);
    return status;
}

/* ---- checks and data ----------------------------------------------------------- */

/* The same on every rank: what the config table cannot see. */
static fedkd_status check_request(const fedkd_config *config, const fedkd_run_options *options)
{
    const char *resume = options ? options->resume : NULL;
    if (resume && resume[0] && strcmp(resume, "auto") != 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "--resume %s: mode kd-start runs three federations, each in its own "
                          "directory; use --resume auto, which continues each one from its "
                          "newest checkpoint", resume);
    if (strcmp(config->algorithm, "fedavg") != 0 && strcmp(config->algorithm, "fedprox") != 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `algorithm`: mode kd-start compares federations of "
                          "averaged weights from three starts; expected \"fedavg\" or "
                          "\"fedprox\", got \"%s\"", config->algorithm);
    /* The config table checks these for files and --set; a config built in
     * code is checked here too. */
    if (!(config->kd.temperature > 0.0))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `kd.temperature`: expected a number > 0, "
                          "got %g", config->kd.temperature);
    if (!(config->kd.weight >= 0.0 && config->kd.weight <= 1.0))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `kd.weight`: expected a number in "
                          "[0, 1], got %g", config->kd.weight);
    return FEDKD_OK;
}

/* kd_clients_load, but rank 0 loads the public set (the student learns on
 * it) and the test set (it scores the starts) even when it hosts no client. */
static fedkd_status load_clients(pipeline *p)
{
    kd_clients *k = &p->clients;
    unsigned flags = FEDKD_CLIENTSET_PUBLIC;
    if (p->rank == 0) flags |= FEDKD_CLIENTSET_LOAD_TEST | FEDKD_CLIENTSET_LOAD_PUBLIC;
    fedkd_status status = kd_clients_load(p->config, p->rank, p->size, flags, k);
    if (status) return status;
    fedkd_model *probe = NULL;
    status = fedkd_model_create(&probe, &k->spec, 1);
    if (status) return status;
    p->num_params = probe->num_params;
    fedkd_model_destroy(&probe);
    return FEDKD_OK;
}

/* Averaging and FedAvg need one architecture: a model file imported into
 * pretrain.dir must hold the config's model. */
static fedkd_status check_architectures(const pipeline *p)
{
    char dir[600], difference[256];
    kd_pretrain_dir(p->config, dir, sizeof dir);
    for (int h = 0; h < p->clients.num_hosted; h++)
        if (fedkd_model_spec_difference(&p->clients.spec, &p->models[h].spec, difference,
                                        sizeof difference))
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "%s/client-%d.h5: holds another model than config key `model` "
                              "(config vs file: %s); mode kd-start averages the clients' weights "
                              "and runs FedAvg, which need the config's model on every client",
                              dir, p->clients.hosted[h], difference);
    return FEDKD_OK;
}

static fedkd_status stop_requested(const char *during)
{
    if (!fedkd_stop_requested) return FEDKD_OK;
    return FEDKD_FAIL(FEDKD_ERR_INTERRUPTED, "interrupted by signal %d during %s",
                      (int)fedkd_stop_requested, during);
}

/* ---- consolidation ------------------------------------------------------------- */

static fedkd_status consolidate_average(pipeline *p)
{
    double t = fedkd_time_now();
    kd_clients *k = &p->clients;
    const float **params = malloc((size_t)(k->num_hosted ? k->num_hosted : 1) * sizeof *params);
    double *weights = malloc((size_t)(k->num_hosted ? k->num_hosted : 1) * sizeof *weights);
    fedkd_status status = FEDKD_OK;
    if (!params || !weights) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the average");
    /* Every rank knows every client's size from the partition. */
    size_t total = 0;
    for (int c = 0; c < k->num_clients; c++) total += fedkd_partition_client_size(k->partition, c);
    for (int h = 0; !status && h < k->num_hosted; h++) {
        params[h] = p->models[h].params;
        weights[h] = (double)fedkd_partition_client_size(k->partition, k->hosted[h]) /
                     (double)total;
    }
    if (!status && p->rank == 0 && !(p->starts[KD_START_AVERAGE] =
                                         fedkd_alloc(p->num_params * sizeof(float))))
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the average model");
    status = fedkd_comm_agree(p->comm, status);
    if (!status)
        status = kd_start_average_params(p->comm, params, weights, k->num_hosted, p->num_params,
                                         p->starts[KD_START_AVERAGE]);
    free(params);
    free(weights);
    kd_start_outcome *o = &p->report.starts[KD_START_AVERAGE];
    o->consolidation_bytes = (uint64_t)k->num_clients * p->num_params * sizeof(float);
    o->consolidation_rounds = 1;
    o->consolidation_wire_bytes = (uint64_t)(p->size - 1) * p->num_params * sizeof(int64_t);
    o->consolidation_seconds = fedkd_time_now() - t;
    return status;
}

typedef struct ensemble_teacher {
    const float *targets;         /* (public_count, classes) */
    size_t classes;
} ensemble_teacher;

/* The targets were softened at kd.temperature, the loop's temperature. */
static fedkd_status ensemble_soft_targets(void *context, const uint32_t *rows, int count,
                                          const float *batch_features, float temperature,
                                          float *probs, float *sample_weight)
{
    const ensemble_teacher *t = context;
    (void)batch_features;
    (void)temperature;
    (void)sample_weight;
    for (int i = 0; i < count; i++)
        memcpy(probs + (size_t)i * t->classes, t->targets + (size_t)rows[i] * t->classes,
               t->classes * sizeof(float));
    return FEDKD_OK;
}

/* Rank 0: a fresh student, initialised like the random start, learns the
 * ensemble's targets on the public set. At weight 1 the loss is
 * T^2 KL(targets || softmax_T(z)) alone: the public labels are never read. */
static fedkd_status train_student(pipeline *p)
{
    const fedkd_config *config = p->config;
    const fedkd_dataset *public_set = p->clients.set.public_set;
    fedkd_model *student = NULL;
    fedkd_optimizer *optimizer = NULL;
    fedkd_optimizer_settings opt = fedkd_train_optimizer_settings(config);
    fedkd_status status = fedkd_model_create(&student, &p->clients.spec, config->local.batch_size);
    if (!status) status = fedkd_optimizer_create(&optimizer, &opt, student->num_params);
    if (status) goto done;
    fedkd_model_init_params(student, config->seed, 0);
    ensemble_teacher context = {p->targets, (size_t)p->clients.num_classes};
    fedkd_teacher teacher = {.soft_targets = ensemble_soft_targets, .context = &context};
    fedkd_train_settings train = fedkd_train_default_settings();
    train.epochs = config->kd.epochs;
    train.batch_size = config->local.batch_size;
    train.seed = config->seed;
    train.stream_a = KD_START_STUDENT_STREAM;
    train.stream_b = FEDKD_KD_STREAM;
    train.teacher = &teacher;
    train.kd_temperature = (float)config->kd.temperature;
    train.kd_weight = 1.0f;
    fedkd_train_stats stats;
    status = fedkd_train_local(student, optimizer, public_set, &train, &stats);
    if (status) {
        char message[512];
        snprintf(message, sizeof message, "%s", fedkd_error_message());
        status = FEDKD_FAIL(status, "kd-start: distilling the student: %s", message);
        goto done;
    }
    p->starts[KD_START_KD] = fedkd_alloc(p->num_params * sizeof(float));
    if (!p->starts[KD_START_KD]) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the student");
        goto done;
    }
    memcpy(p->starts[KD_START_KD], student->params, p->num_params * sizeof(float));
    fedkd_log_info("kd-start: student distilled on %zu public samples, %d epoch(s) at T = %g "
                   "(%ld steps): KD loss %.4f -> %.4f",
                   public_set->count, config->kd.epochs, config->kd.temperature, stats.steps,
                   stats.first_loss, stats.mean_loss);
done:
    fedkd_optimizer_destroy(&optimizer);
    fedkd_model_destroy(&student);
    return status;
}

static fedkd_status consolidate_kd(pipeline *p)
{
    double t = fedkd_time_now();
    const fedkd_config *config = p->config;
    kd_clients *k = &p->clients;
    size_t count = k->set.public_count;
    int classes = k->num_classes;
    fedkd_status status = FEDKD_OK;
    p->logits = calloc((size_t)(k->num_hosted ? k->num_hosted : 1), sizeof *p->logits);
    if (!p->logits) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the logits");
    for (int h = 0; !status && h < k->num_hosted; h++)
        status = fedkd_kd_compute_logits(&p->models[h].spec, p->models[h].params,
                                         k->set.public_set, config->eval_batch_size,
                                         &p->logits[h]);
    if (!status && p->rank == 0 &&
        !(p->targets = fedkd_alloc((count ? count : 1) * (size_t)classes * sizeof(float))))
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the ensemble's targets");
    status = fedkd_comm_agree(p->comm, status);
    if (!status)
        status = kd_start_ensemble_targets(p->comm, (const float *const *)p->logits,
                                           k->num_hosted, k->num_clients, count, classes,
                                           (float)config->kd.temperature,
                                           strcmp(config->kd.ensemble, "logits") == 0,
                                           p->targets);
    /* Only rank 0 trains: the others learn how it went. A failure agreed
     * on before is not agreed on again, which would move its message. */
    if (!status) {
        if (p->rank == 0) status = train_student(p);
        status = fedkd_comm_agree(p->comm, status);
    }
    kd_start_outcome *o = &p->report.starts[KD_START_KD];
    o->consolidation_bytes = (uint64_t)k->num_clients * count * (uint64_t)classes * sizeof(float);
    o->consolidation_rounds = 1;
    o->consolidation_wire_bytes = (uint64_t)(p->size - 1) * count * (uint64_t)classes *
                                  sizeof(int64_t);
    o->consolidation_seconds = fedkd_time_now() - t;
    return status;
}

/* Rank 0: the seeded start, every start's test accuracy and checksum, and
 * the consolidated starts as model files in run.dir. */
static fedkd_status score_and_save(pipeline *p)
{
    const fedkd_config *config = p->config;
    fedkd_model *model = NULL;
    fedkd_status status = fedkd_model_create(&model, &p->clients.spec, config->eval_batch_size);
    if (status) return status;
    fedkd_model_init_params(model, config->seed, 0);
    p->starts[KD_START_RANDOM] = fedkd_alloc(p->num_params * sizeof(float));
    if (!p->starts[KD_START_RANDOM]) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the random start");
        goto done;
    }
    memcpy(p->starts[KD_START_RANDOM], model->params, p->num_params * sizeof(float));
    status = fedkd_make_directories(config->run.dir);
    for (int s = 0; s < KD_START_COUNT && !status; s++) {
        kd_start_outcome *o = &p->report.starts[s];
        memcpy(model->params, p->starts[s], p->num_params * sizeof(float));
        double loss = 0.0;
        status = fedkd_evaluate(model, p->clients.test, &o->round0_accuracy, &loss);
        o->start_checksum = fedkd_checksum(p->starts[s], p->num_params * sizeof(float));
        if (status || !start_files[s][0]) continue;
        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "made_by", "fedkd-sim " FEDKD_VERSION " kd-start");
        cJSON_AddStringToObject(meta, "start", kd_start_names[s]);
        cJSON_AddNumberToObject(meta, "seed", (double)config->seed);
        cJSON_AddNumberToObject(meta, "clients", config->clients.count);
        cJSON_AddNumberToObject(meta, "public_size", (double)p->clients.set.public_count);
        cJSON_AddNumberToObject(meta, "test_accuracy", o->round0_accuracy);
        char *text = meta ? cJSON_PrintUnformatted(meta) : NULL;
        cJSON_Delete(meta);
        if (!text) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory describing %s", start_files[s]);
            break;
        }
        snprintf(o->init_model, sizeof o->init_model, "%s/%s", config->run.dir, start_files[s]);
        status = fedkd_model_file_save(o->init_model, &p->clients.spec, p->starts[s],
                                       p->num_params, text);
        free(text);
    }
    if (!status)
        fedkd_log_info("kd-start: test accuracy of the starts: random %.4f, average %.4f, kd %.4f",
                       p->report.starts[KD_START_RANDOM].round0_accuracy,
                       p->report.starts[KD_START_AVERAGE].round0_accuracy,
                       p->report.starts[KD_START_KD].round0_accuracy);
done:
    fedkd_model_destroy(&model);
    return status;
}

/* The client data, models and logits are not needed by the federations,
 * which load their own. */
static void free_consolidation(pipeline *p)
{
    for (int h = 0; p->logits && h < p->clients.num_hosted; h++) fedkd_free(p->logits[h]);
    free(p->logits);
    p->logits = NULL;
    kd_pretrained_free(p->models, p->clients.num_hosted);
    free(p->models);
    p->models = NULL;
    fedkd_free(p->targets);
    p->targets = NULL;
    for (int s = 0; s < KD_START_COUNT; s++) {
        fedkd_free(p->starts[s]);
        p->starts[s] = NULL;
    }
    kd_clients_free(&p->clients);
}

/* ---- the three federations -------------------------------------------------------- */

/* This run's config with run.dir and init.model set: every top-level
 * member of the merged document is given again as an override. */
static fedkd_status sub_config(const fedkd_config *config, const char *run_dir,
                               const char *init_model, fedkd_config *out)
{
    int members = cJSON_GetArraySize(config->json);
    char **texts = calloc((size_t)members + 2, sizeof *texts);
    fedkd_status status = FEDKD_OK;
    int n = 0;
    if (!texts) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for a federation's config");
    for (const cJSON *item = config->json->child; item && !status; item = item->next)
        if (!(texts[n++] = fedkd_config_override_text(item->string, item)))
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for a federation's config");
    cJSON *dir = cJSON_CreateString(run_dir), *model = cJSON_CreateString(init_model);
    if (!status && !(dir && model && (texts[n++] = fedkd_config_override_text("run.dir", dir)) &&
                     (texts[n++] = fedkd_config_override_text("init.model", model))))
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for a federation's config");
    cJSON_Delete(dir);
    cJSON_Delete(model);
    if (!status) status = fedkd_config_load(out, NULL, (const char *const *)texts, n);
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    return status;
}

static double number_of(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsNumber(item) ? item->valuedouble : 0.0;
}

/* Rank 0, --resume auto: a federation whose summary.json says completed
 * with exactly this config (rounds and target included) is kept as it is
 * and its outcome read back. Its start model was made from the same config
 * and pre-trained models; the one exception, pre-trained files imported
 * without a fingerprint and replaced since, is the user's to avoid. */
static int completed_before(const fedkd_config *sub, fedkd_run_result *run)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/summary.json", sub->run.dir);
    cJSON *summary = NULL;
    /* A missing or unreadable summary means the run is done again. */
    if (fedkd_read_json_file(path, "run summary", &summary)) fedkd_error_clear();
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(summary, "status");
    const cJSON *checksum = cJSON_GetObjectItemCaseSensitive(summary, "params_checksum");
    int kept = cJSON_IsString(state) && strcmp(state->valuestring, "completed") == 0 &&
               cJSON_IsString(checksum) &&
               cJSON_Compare(cJSON_GetObjectItemCaseSensitive(summary, "config"), sub->json, 1);
    if (kept) {
        run->rounds_run = (int)number_of(summary, "rounds_run");
        run->final_accuracy = number_of(summary, "final_accuracy");
        run->best_accuracy = number_of(summary, "best_accuracy");
        run->rounds_to_target = (int)number_of(summary, "rounds_to_target");
        run->bytes_to_target = (uint64_t)number_of(summary, "bytes_to_target");
        run->bytes_down_total = (uint64_t)number_of(summary, "bytes_down_total");
        run->bytes_up_total = (uint64_t)number_of(summary, "bytes_up_total");
        run->wire_bytes_total = (uint64_t)number_of(summary, "wire_bytes_total");
        run->wall_seconds = number_of(summary, "wall_seconds");
        run->num_params = (size_t)number_of(summary, "num_params");
        run->params_checksum = strtoull(checksum->valuestring, NULL, 16);
    }
    cJSON_Delete(summary);
    return kept;
}

static fedkd_status run_federation(pipeline *p, int s)
{
    const fedkd_config *config = p->config;
    kd_start_outcome *o = &p->report.starts[s];
    char run_dir[sizeof o->run_dir];
    /* run.dir/<algorithm>-<start>: fedavg-random, fedprox-kd, ... */
    snprintf(run_dir, sizeof run_dir, "%s/%s-%s", config->run.dir, config->algorithm,
             kd_start_names[s]);
    /* Every rank builds the federation's config, with the start file rank 0
     * wrote (none for the seeded start). */
    char init_model[sizeof o->init_model] = "";
    if (start_files[s][0])
        snprintf(init_model, sizeof init_model, "%s/%s", config->run.dir, start_files[s]);
    fedkd_config sub;
    fedkd_status status = fedkd_comm_agree(p->comm, sub_config(config, run_dir, init_model, &sub));
    if (status) return status;
    snprintf(o->run_dir, sizeof o->run_dir, "%s", run_dir);
    snprintf(o->init_model, sizeof o->init_model, "%s", init_model);
    int reuse = p->rank == 0 && p->resume_auto && completed_before(&sub, &o->run);
    MPI_Request request;
    if (MPI_Ibcast(&reuse, 1, MPI_INT, 0, p->comm, &request) != MPI_SUCCESS)
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ibcast of the resume decision failed");
    else
        status = fedkd_comm_wait(&request, "the resume decision");
    status = fedkd_comm_agree(p->comm, status);
    if (!status && reuse) {
        o->reused = 1;
        o->ran = 1;
        fedkd_log_info("kd-start: [%d/3] %s from the %s start: completed before (%s/summary.json), "
                       "kept", s + 1, config->algorithm, kd_start_names[s], run_dir);
    } else if (!status) {
        fedkd_log_info("kd-start: [%d/3] %s from the %s start (%s), logs in %s", s + 1,
                       config->algorithm, kd_start_names[s],
                       init_model[0] ? init_model : "seeded initialisation", run_dir);
        memset(&o->run, 0, sizeof o->run);
        /* The federations' directories are kd-start's own: a fresh kd-start
         * runs them again from round 1 (kd-start's contract), as sweeps do
         * their points; --resume auto continues them. */
        fedkd_run_options options = {.resume = p->resume_auto ? "auto" : NULL,
                                     .start_over = !p->resume_auto,
                                     .data_flags = FEDKD_CLIENTSET_PUBLIC};
        status = fedkd_run_federated(&sub, p->comm, &options, &o->run);
        o->ran = status == FEDKD_OK;
        /* The KD start's final model is the run's result. */
        if (s != KD_START_KD) {
            free(o->run.final_params);
            o->run.final_params = NULL;
        }
    }
    fedkd_config_free(&sub);
    return status;
}

/* ---- the run ------------------------------------------------------------------------- */

/* A federation returns a failure on every rank, but the statuses may
 * differ, and rank 0 alone may fail writing its files: every rank learns
 * whether any failed. A rank's own message stays (unlike fedkd_comm_agree, which
 * keeps one rank's), since each failing rank already recorded its own. */
static fedkd_status agree_any_failed(MPI_Comm comm, fedkd_status local)
{
    int mine = (int)local, worst = 0;
    MPI_Request request;
    if (MPI_Iallreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, comm, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iallreduce failed while checking the ranks' status");
    fedkd_status waited = fedkd_comm_wait(&request, "the ranks' status check");
    if (waited) return waited;
    fedkd_comm_note_agreed((fedkd_status)worst);
    if (local) return local;
    if (worst) fedkd_error_clear();
    return (fedkd_status)worst;
}

fedkd_status fedkd_run_kd_start(const fedkd_config *config, MPI_Comm comm,
                                const fedkd_run_options *options, fedkd_run_result *result)
{
    double start = fedkd_time_now();
    pipeline pipe = {.config = config, .comm = comm};
    pipeline *p = &pipe;
    memset(result, 0, sizeof *result);
    MPI_Comm_rank(comm, &p->rank);
    MPI_Comm_size(comm, &p->size);
    p->resume_auto = options && options->resume && strcmp(options->resume, "auto") == 0;
    int started = 0; /* run.dir may hold this run's summary */
    kd_start_report *r = &p->report;

    fedkd_status status = fedkd_comm_agree(comm, check_request(config, options));
    if (status) return status;
    status = load_clients(p);
    if (!status) {
        p->models = calloc((size_t)(p->clients.num_hosted ? p->clients.num_hosted : 1),
                           sizeof *p->models);
        if (!p->models) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client models");
    }
    status = fedkd_comm_agree(comm, status);
    if (status) goto done;
    started = 1;
    r->num_clients = p->clients.num_clients;
    r->classes = p->clients.num_classes;
    r->public_count = p->clients.set.public_count;
    r->num_params = p->num_params;
    if (p->rank == 0)
        fedkd_log_info("kd-start: %d clients on %d rank(s), partition %s, model %s (%zu "
                       "parameters), %zu public samples held out; then %s from 3 starts, %d "
                       "rounds each, target accuracy %.2f",
                       r->num_clients, p->size, config->partition.scheme, p->clients.spec.name,
                       p->num_params, r->public_count, config->algorithm, config->rounds,
                       config->target_accuracy);

    status = kd_pretrain_hosted(config, &p->clients, p->models);
    if (!status) status = check_architectures(p);
    status = kd_pretrain_report(config, comm, &p->clients, p->models, status);
    r->pretrain_seconds = fedkd_time_now() - start;
    if (!status) status = fedkd_comm_agree(comm, stop_requested("the consolidation"));
    if (!status) status = consolidate_average(p);
    if (!status) status = consolidate_kd(p);
    if (!status) {
        if (p->rank == 0) status = score_and_save(p);
        status = fedkd_comm_agree(comm, status);
    }
    free_consolidation(p);
    for (int s = 0; s < KD_START_COUNT && !status; s++) {
        status = fedkd_comm_agree(comm, stop_requested("the federations"));
        if (!status) status = agree_any_failed(comm, run_federation(p, s));
    }

done:
    free_consolidation(p);
    r->wall_seconds = fedkd_time_now() - start;
    if (p->rank == 0) {
        kd_start_overall(r, result);
        result->final_params = r->starts[KD_START_KD].run.final_params;
        r->starts[KD_START_KD].run.final_params = NULL;
        if (started) {
            const char *text = !status                          ? "completed"
                               : status == FEDKD_ERR_INTERRUPTED ? "interrupted"
                                                                 : "failed";
            char first_message[1024];
            snprintf(first_message, sizeof first_message, "%s", fedkd_error_message());
            fedkd_status written = kd_start_write(config, r, text);
            if (!status) status = written;
            else if (written) FEDKD_FAIL(status, "%s", first_message); /* the cause, not its echo */
        }
    }
    for (int s = 0; s < KD_START_COUNT; s++) free(r->starts[s].run.final_params);
    /* Rank 0 may have failed writing the tables. */
    return started ? agree_any_failed(comm, status) : status;
}
