/* The kd-study mode: KD between the clients' pre-trained models.
 *
 * 1. Every rank loads the clients it hosts (and the test set if it hosts
 *    any); their models are pre-trained or reused (pretrain.c).
 * 2. Every rank builds the same list of runs ("jobs"): for each student of
 *    kd.students, each (student, teachers) pairing of kd.pairs and each
 *    method of kd.methods. A job runs on the rank hosting its student,
 *    where its data are: the transfer set is the student's own data or
 *    (kd.transfer "public") the public set, and tuned methods choose (T, a)
 *    on a split of the student's data or (kd.validation "public") on a
 *    labelled part of the public set that every student shares.
 * 3. Teacher models travel to the ranks whose students need them: one
 *    broadcast per teacher from its host rank, bytes counted.
 * 4. Each rank runs its jobs in list order. The test set stays sealed
 *    (unreadable pages) except while a distilled student is scored, so no
 *    method, and no tuning, can read it. Results depend only on the job and
 *    the streams, so they are the same at any number of ranks.
 * 5. Rank 0 collects one row per job (an exact sum: one rank fills each
 *    row) and writes the tables (study_output.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "experiments/experiments_private.h"

typedef struct study {
    const fedkd_config *config;
    MPI_Comm comm;
    int rank, size;
    unsigned data_flags;         /* client-set flags of the mode */
    fedkd_kd_settings settings;
    const struct kd_pairing *pairing; /* kd.pairs */
    const fedkd_kd_method *methods[FEDKD_KD_MAX_METHODS];
    int num_methods;
    int *students;               /* (num_students) ascending */
    int num_students;
    kd_clients clients;
    kd_pretrained *pretrained;   /* (clients.num_hosted) */
    kd_sealed test;
    /* Ranks hosting clients, when kd.validation / kd.transfer is "public":
     * the public set's validation part and the public transfer set (owned
     * only when split off: public_transfer may be the whole public set). */
    fedkd_dataset *public_validation;
    const fedkd_dataset *public_transfer;
    fedkd_dataset *public_transfer_part;
    /* kd.validation "local" with kd.transfer "public": each hosted
     * student's validation split of its own data (num_hosted). */
    fedkd_dataset **local_validation;
    kd_study_row *rows;          /* (num_jobs) */
    int num_jobs;
    int *teacher_pool;           /* the rows' teacher lists */
    /* Models by client id: hosted ones point into `pretrained`, received
     * ones are owned (owned[c] = 1). */
    fedkd_model_spec *specs;     /* (num_clients) */
    uint64_t *num_params;        /* (num_clients) */
    float **params;              /* (num_clients) */
    unsigned char *owned;        /* (num_clients) */
    kd_study_totals totals;
} study;

/* A float hyper-parameter as the decimal the user wrote (0.1, not
 * 0.100000001490116), for the tables. */
static double as_written(float value)
{
    if (!isfinite(value)) return (double)value;
    char text[32];
    snprintf(text, sizeof text, "%.7g", (double)value);
    return strtod(text, NULL);
}

static int host_of(const study *s, int client)
{
    return fedkd_client_host_rank(client, s->size);
}

/* ---- settings and jobs ------------------------------------------------------ */

static int compare_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static fedkd_status parse_students(study *s)
{
    const char *text = s->config->kd.students;
    int n = s->config->clients.count;
    s->students = malloc((size_t)n * sizeof *s->students);
    if (!s->students) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the student list");
    s->num_students = 0;
    const char *p = text;
    while (*p == ' ') p++;
    if (*p == '\0') {
        for (int c = 0; c < n; c++) s->students[s->num_students++] = c;
        return FEDKD_OK;
    }
    for (;;) {
        char *end = NULL;
        long id = strtol(p, &end, 10);
        const char *after = end;
        while (*after == ' ') after++;
        int duplicate = 0;
        for (int i = 0; i < s->num_students; i++) duplicate |= s->students[i] == id;
        if (end == p || id < 0 || id >= n || duplicate || (*after != ',' && *after != '\0'))
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "config key `kd.students`: expected distinct client ids in [0, %d) "
                              "separated by commas (or \"\" for all), got \"%s\"",
                              n, text);
        s->students[s->num_students++] = (int)id;
        if (*after == '\0') break;
        p = after + 1;
        while (*p == ' ') p++;
    }
    qsort(s->students, (size_t)s->num_students, sizeof *s->students, compare_int);
    return FEDKD_OK;
}

/* A kd.pairs rule: how many (student, teachers) entries a student has, and
 * the teachers of each. One row per rule, found by name. */
typedef struct kd_pairing {
    const char *name;
    int (*entries)(int num_clients);
    int (*teachers)(int num_clients, int student, int entry, int *out);
} kd_pairing;

static int every_other_entry(int num_clients) { return num_clients - 1; }
static int one_entry(int num_clients) { return num_clients > 0 ? 1 : 0; }

/* all-ordered: entry e is the e-th client other than the student. */
static int teacher_of_entry(int num_clients, int student, int entry, int *out)
{
    (void)num_clients;
    out[0] = entry < student ? entry : entry + 1;
    return 1;
}

/* rest: every other client at once. */
static int all_other_teachers(int num_clients, int student, int entry, int *out)
{
    (void)entry;
    int count = 0;
    for (int c = 0; c < num_clients; c++)
        if (c != student) out[count++] = c;
    return count;
}

/* ring: the next client. */
static int next_teacher(int num_clients, int student, int entry, int *out)
{
    (void)entry;
    out[0] = (student + 1) % num_clients;
    return 1;
}

static const kd_pairing pairings[] = {
    {"all-ordered", every_other_entry, teacher_of_entry},
    {"rest", one_entry, all_other_teachers},
    {"ring", one_entry, next_teacher},
    {NULL, NULL, NULL},
};

static fedkd_status read_settings(study *s)
{
    const fedkd_config *config = s->config;
    fedkd_status status = fedkd_kd_settings_from_config(config, &s->settings);
    if (!status)
        status = fedkd_kd_methods_parse(config->kd.methods, s->methods, FEDKD_KD_MAX_METHODS,
                                        &s->num_methods);
    if (status) return status;
    int n = config->clients.count;
    if (n < 2)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `clients.count`: kd-study needs at least 2 clients (a "
                          "student and a teacher), got %d", n);
    if (s->settings.peers > n)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `kd.peers`: %d peers need as many clients, clients.count "
                          "is %d", s->settings.peers, n);
    for (s->pairing = pairings; s->pairing->name; s->pairing++)
        if (strcmp(s->pairing->name, config->kd.pairs) == 0) break;
    if (!s->pairing->name)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `kd.pairs`: unknown pairing `%s`; expected all-ordered, "
                          "rest or ring", config->kd.pairs);
    return parse_students(s);
}

/* ---- where tuning and KD look ----------------------------------------------- */

static int any_tuned(const study *s)
{
    for (int m = 0; m < s->num_methods; m++)
        if (s->methods[m]->tunes) return 1;
    return 0;
}

static int any_needs_labels(const study *s)
{
    for (int m = 0; m < s->num_methods; m++)
        if (fedkd_kd_method_needs_labels(s->methods[m], &s->settings)) return 1;
    return 0;
}

static fedkd_status subset_named(fedkd_dataset **out, const fedkd_dataset *source,
                                 const uint32_t *rows, size_t n, const char *name)
{
    fedkd_status status = fedkd_dataset_subset(out, source, rows, n);
    if (!status) snprintf((*out)->origin, sizeof (*out)->origin, "%s (%zu rows)", name, n);
    return status;
}

/* The public set's parts (kd.validation / kd.transfer "public") and, for a
 * public transfer set with local validation, each hosted student's
 * validation split; checked before anything trains. Sizes are checked on
 * every rank (each knows the public set's size), samples where they are
 * loaded. A train-holdout public set is disjoint from the test set and
 * from every client by its rows; a public file is compared by content
 * (the client set has already refused one that holds a test sample). */
static fedkd_status prepare_sets(study *s)
{
    const fedkd_kd_settings *ks = &s->settings;
    size_t n_validation = 0, n_transfer = 0;
    fedkd_status status = fedkd_kd_public_sizes(ks, s->clients.set.public_count, &n_validation,
                                                &n_transfer);
    if (status) return status;
    const fedkd_dataset *public_set = s->clients.set.public_set;
    int classes = s->clients.num_classes;
    int from_file = strcmp(s->config->public_set.source, "train-holdout") != 0;
    if (!public_set || (ks->validation != FEDKD_KD_PUBLIC && ks->transfer != FEDKD_KD_PUBLIC))
        return FEDKD_OK;
    if (ks->validation == FEDKD_KD_PUBLIC) {
        uint32_t *order = NULL;
        if (n_validation < public_set->count) {
            status = fedkd_kd_split_rows(ks->seed, FEDKD_PUBLIC_STREAM, FEDKD_KD_PUBLIC_SPLIT_STREAM,
                                         public_set->count, n_validation, "kd.validation_size",
                                         &order);
        } else {
            order = malloc(public_set->count * sizeof *order);
            if (!order) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the public rows");
            for (size_t i = 0; order && i < public_set->count; i++) order[i] = (uint32_t)i;
        }
        if (!status)
            status = subset_named(&s->public_validation, public_set, order, n_validation,
                                  "public validation set");
        if (!status && ks->transfer == FEDKD_KD_PUBLIC)
            status = subset_named(&s->public_transfer_part, public_set, order + n_validation,
                                  n_transfer, "public transfer set");
        free(order);
        if (status) return status;
        s->public_transfer = s->public_transfer_part;
        status = fedkd_kd_check_labelled(s->public_validation, classes, "kd.validation",
                                         "the public validation set");
        for (int h = 0; h < s->clients.num_hosted && from_file && !status &&
                        ks->transfer == FEDKD_KD_LOCAL; h++) {
            char name[64];
            snprintf(name, sizeof name, "client %d's data (its transfer set)", s->clients.hosted[h]);
            status = fedkd_kd_check_disjoint(s->public_validation, s->clients.data[h],
                                             "kd.validation", "the public validation set", name);
        }
    } else {
        s->public_transfer = public_set;
    }
    if (!status && ks->transfer == FEDKD_KD_PUBLIC && any_needs_labels(s))
        status = fedkd_kd_check_labelled(s->public_transfer, classes, "kd.transfer",
                                         "the public transfer set (the methods' CE term or "
                                         "supervised confidence read labels)");
    if (status || ks->validation != FEDKD_KD_LOCAL || ks->transfer != FEDKD_KD_PUBLIC ||
        !any_tuned(s))
        return status;
    /* Local validation beside a public transfer set: the student's own
     * split, as tuned KD makes it of a local transfer set. */
    s->local_validation = calloc((size_t)(s->clients.num_hosted ? s->clients.num_hosted : 1),
                                 sizeof *s->local_validation);
    if (!s->local_validation)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the validation sets");
    for (int h = 0; h < s->clients.num_hosted && !status; h++) {
        int c = s->clients.hosted[h];
        const fedkd_dataset *own = s->clients.data[h];
        size_t n = own->count;
        size_t n_own = (size_t)llround(ks->validation_fraction * (double)n);
        if (n_own < 1) n_own = 1;
        if (n_own >= n) {
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "config key `kd.validation_fraction`: client %d has %zu samples, "
                                "too few to hold out %g of them for tuned KD",
                                c, n, ks->validation_fraction);
            break;
        }
        uint32_t *order = NULL;
        status = fedkd_kd_split_rows(ks->seed, (uint64_t)c, FEDKD_KD_VALIDATION_STREAM, n, n_own,
                                     "kd.validation_fraction", &order);
        if (!status)
            status = subset_named(&s->local_validation[h], own, order, n_own,
                                  "the student's validation split");
        free(order);
        if (!status && from_file) {
            char name[64];
            snprintf(name, sizeof name, "client %d's validation split", c);
            status = fedkd_kd_check_disjoint(s->local_validation[h], s->public_transfer,
                                             "kd.validation", name, "the public transfer set");
        }
    }
    return status;
}

/* DML's peers: the first `wanted` of the pairing's teachers, completed by
 * the clients after the last one (cyclically), never the student. */
static int extend_peers(int n, int student, const int *given, int num_given, int wanted, int *out)
{
    int count = 0;
    for (int i = 0; i < num_given && count < wanted; i++) out[count++] = given[i];
    int next = count ? out[count - 1] : student;
    while (count < wanted) {
        next = (next + 1) % n;
        int taken = next == student;
        for (int i = 0; i < count; i++) taken |= out[i] == next;
        if (!taken) out[count++] = next;
    }
    return count;
}

/* Counts (fill = 0) or writes (fill = 1) the jobs in their fixed order:
 * student, pairing entry, method. */
static void enumerate_jobs(study *s, int fill, int *num_jobs, size_t *pool_used)
{
    int n = s->config->clients.count;
    const kd_pairing *pairing = s->pairing;
    int *entry = malloc((size_t)n * sizeof *entry);
    int jobs = 0;
    size_t used = 0;
    for (int i = 0; entry && i < s->num_students; i++) {
        int student = s->students[i];
        int entries = pairing->entries(n);
        for (int e = 0; e < entries; e++) {
            int num_entry = pairing->teachers(n, student, e, entry);
            for (int m = 0; m < s->num_methods; m++) {
                fedkd_kd_teacher_rule rule = s->methods[m]->teachers;
                if (rule == FEDKD_KD_TEACHERS_ALL_OTHERS && e > 0) continue;
                int count = n - 1;
                if (rule == FEDKD_KD_TEACHERS_PAIRING) count = num_entry;
                if (rule == FEDKD_KD_TEACHERS_PEERS) count = s->settings.peers - 1;
                if (fill) {
                    int *teachers = s->teacher_pool + used;
                    if (rule == FEDKD_KD_TEACHERS_ALL_OTHERS)
                        all_other_teachers(n, student, 0, teachers);
                    else if (rule == FEDKD_KD_TEACHERS_PEERS)
                        extend_peers(n, student, entry, num_entry, count, teachers);
                    else
                        memcpy(teachers, entry, (size_t)count * sizeof *teachers);
                    kd_study_row *row = &s->rows[jobs];
                    memset(row, 0, sizeof *row);
                    row->method = m;
                    row->student = student;
                    row->num_teachers = count;
                    row->teachers = teachers;
                }
                jobs++;
                used += (size_t)count;
            }
        }
    }
    free(entry);
    *num_jobs = jobs;
    *pool_used = used;
}

static fedkd_status build_jobs(study *s)
{
    size_t pool = 0;
    enumerate_jobs(s, 0, &s->num_jobs, &pool);
    s->rows = calloc((size_t)(s->num_jobs ? s->num_jobs : 1), sizeof *s->rows);
    s->teacher_pool = malloc((pool ? pool : 1) * sizeof *s->teacher_pool);
    if (!s->rows || !s->teacher_pool)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %d kd-study runs", s->num_jobs);
    int filled = 0;
    size_t filled_pool = 0;
    enumerate_jobs(s, 1, &filled, &filled_pool);
    if (filled != s->num_jobs || filled_pool != pool)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory listing the kd-study runs");
    return FEDKD_OK;
}

/* ---- moving teacher models ----------------------------------------------- */

typedef struct model_header {
    fedkd_model_spec spec;
    uint64_t num_params;
} model_header;

static fedkd_status broadcast(study *s, void *buffer, size_t bytes, int root, const char *what)
{
    MPI_Request request;
    if (MPI_Ibcast(buffer, (int)bytes, MPI_BYTE, root, s->comm, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ibcast of %s failed", what);
    fedkd_status status = fedkd_comm_wait(&request, what);
    if (!status) s->totals.wire_bytes += (uint64_t)(s->size - 1) * bytes;
    return status;
}

/* Every teacher of any job reaches every rank that hosts one of its
 * students; hosted clients are used in place. */
static fedkd_status distribute_models(study *s)
{
    int n = s->config->clients.count;
    fedkd_status status = FEDKD_OK;
    unsigned char *teaches = calloc((size_t)n, 1), *needed_here = calloc((size_t)n, 1);
    float *scratch = NULL;
    if (!teaches || !needed_here) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the model table");
        goto done;
    }
    for (int j = 0; j < s->num_jobs; j++) {
        const kd_study_row *row = &s->rows[j];
        for (int t = 0; t < row->num_teachers; t++) {
            teaches[row->teachers[t]] = 1;
            if (host_of(s, row->student) == s->rank) needed_here[row->teachers[t]] = 1;
        }
    }
    for (int h = 0; h < s->clients.num_hosted; h++) {
        int c = s->clients.hosted[h];
        s->specs[c] = s->pretrained[h].spec;
        s->num_params[c] = s->pretrained[h].num_params;
        s->params[c] = s->pretrained[h].params;
    }
    /* Headers first, so every rank can size its buffers and agree. */
    uint64_t largest = 0;
    for (int c = 0; c < n && s->size > 1; c++) {
        if (!teaches[c]) continue;
        model_header header = {s->specs[c], s->num_params[c]};
        status = broadcast(s, &header, sizeof header, host_of(s, c), "a teacher model's header");
        if (status) goto done;
        s->specs[c] = header.spec;
        s->num_params[c] = header.num_params;
        if (header.num_params > largest) largest = header.num_params;
    }
    fedkd_status local = FEDKD_OK;
    for (int c = 0; c < n && s->size > 1 && !local; c++) {
        if (!teaches[c] || host_of(s, c) == s->rank || !needed_here[c]) continue;
        s->params[c] = malloc((size_t)s->num_params[c] * sizeof(float));
        s->owned[c] = 1;
        if (!s->params[c]) local = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for client %d's "
                                              "model", c);
    }
    if (!local && s->size > 1 && largest > 0) {
        scratch = malloc((size_t)largest * sizeof(float));
        if (!scratch) local = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for a model buffer");
    }
    status = fedkd_comm_agree(s->comm, local);
    if (status) goto done;
    for (int c = 0; c < n && s->size > 1; c++) {
        if (!teaches[c]) continue;
        float *buffer = s->params[c] ? s->params[c] : scratch;
        status = broadcast(s, buffer, (size_t)s->num_params[c] * sizeof(float), host_of(s, c),
                           "a teacher model");
        if (status) goto done;
    }
    /* What a deployment would send: each teacher once to each of its
     * students. A student's jobs are consecutive. */
    for (int j = 0; j < s->num_jobs; j++) {
        const kd_study_row *row = &s->rows[j];
        if (j == 0 || s->rows[j - 1].student != row->student) memset(needed_here, 0, (size_t)n);
        for (int t = 0; t < row->num_teachers; t++) {
            int c = row->teachers[t];
            if (!needed_here[c]) s->totals.teacher_bytes += s->num_params[c] * sizeof(float);
            needed_here[c] = 1;
        }
    }
done:
    free(scratch);
    free(teaches);
    free(needed_here);
    return status;
}

/* ---- running the jobs -------------------------------------------------------- */

/* One student's jobs are consecutive; its teachers' logits on its data are
 * computed once for all of them. */
static fedkd_status run_student_jobs(study *s, int first, int end)
{
    const fedkd_config *config = s->config;
    int student = s->rows[first].student;
    int h = kd_clients_find(&s->clients, student);
    int n = config->clients.count;
    int classes = s->clients.num_classes;
    const fedkd_dataset *transfer =
        s->settings.transfer == FEDKD_KD_PUBLIC ? s->public_transfer : s->clients.data[h];
    const fedkd_dataset *validation = NULL; /* NULL: tuning splits the transfer set */
    if (s->settings.validation == FEDKD_KD_PUBLIC) validation = s->public_validation;
    else if (s->local_validation) validation = s->local_validation[h];
    float **logits = calloc((size_t)n, sizeof *logits);
    fedkd_kd_teacher *teachers = calloc((size_t)n, sizeof *teachers);
    fedkd_model *model = NULL;
    fedkd_status status = FEDKD_OK;
    if (!logits || !teachers) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for client %d's teachers", student);
        goto done;
    }
    int max_batch = config->local.batch_size > config->eval_batch_size ? config->local.batch_size
                                                                        : config->eval_batch_size;
    status = fedkd_model_create(&model, &s->pretrained[h].spec, max_batch);
    if (status) goto done;
    for (int j = first; j < end && !status; j++) {
        kd_study_row *row = &s->rows[j];
        if (fedkd_stop_requested) {
            status = FEDKD_FAIL(FEDKD_ERR_INTERRUPTED, "interrupted by signal %d during the "
                                "kd-study; no tables were written", (int)fedkd_stop_requested);
            break;
        }
        for (int t = 0; t < row->num_teachers && !status; t++) {
            int c = row->teachers[t];
            if (!logits[c])
                status = fedkd_kd_compute_logits(&s->specs[c], s->params[c], transfer,
                                                 s->settings.logit_batch, &logits[c]);
            teachers[t] = (fedkd_kd_teacher){
                .client = c, .spec = &s->specs[c], .params = s->params[c], .logits = logits[c],
                .histogram = s->clients.partition->histograms + (size_t)c * (size_t)classes};
        }
        if (status) break;
        memcpy(model->params, s->pretrained[h].params, model->num_params * sizeof(float));
        fedkd_kd_job job = {
            .student_client = student, .student = model, .transfer = transfer,
            .validation = validation,
            .student_histogram = s->clients.partition->histograms + (size_t)student * (size_t)classes,
            .num_teachers = row->num_teachers, .teachers = teachers};
        fedkd_kd_outcome outcome = {.temperature = NAN, .weight = NAN, .validation_accuracy = NAN,
                                    .num_peers = 1, .teacher_share = NAN};
        double start = fedkd_time_now();
        /* The test set is sealed here: nothing the method does can read it. */
        status = s->methods[row->method]->distil(&s->settings, &job, &outcome);
        row->seconds = fedkd_time_now() - start;
        if (status == FEDKD_ERR_NUMERIC) {
            /* Training that diverges is an outcome of the run's (T, weight),
             * not a failed study: the row says so (after = NaN) and the
             * summaries count it apart. The next job starts afresh. */
            fedkd_error_clear();
            status = FEDKD_OK;
            row->after = NAN;
        } else {
            double loss = 0.0;
            if (!status) status = kd_sealed_unlock(&s->test);
            if (!status) status = fedkd_evaluate(model, &s->test.view, &row->after, &loss);
            if (!status) status = kd_sealed_lock(&s->test);
        }
        if (status) {
            char message[1024];
            snprintf(message, sizeof message, "%s", fedkd_error_message());
            FEDKD_FAIL(status, "%s KD of client %d: %s", s->methods[row->method]->name, student,
                       message);
            break;
        }
        row->temperature = as_written(outcome.temperature);
        row->weight = as_written(outcome.weight);
        row->validation = outcome.validation_accuracy;
        row->peers = outcome.num_peers;
        row->steps = outcome.steps;
        row->diverged = outcome.diverged;
        row->teacher_share = outcome.teacher_share;
        row->before = s->pretrained[h].test_accuracy;
    }
done:
    for (int c = 0; logits && c < n; c++) fedkd_free(logits[c]);
    free(logits);
    free(teachers);
    fedkd_model_destroy(&model);
    return status;
}

static fedkd_status run_hosted_jobs(study *s)
{
    fedkd_status status = FEDKD_OK;
    for (int j = 0; j < s->num_jobs && !status;) {
        int end = j + 1;
        while (end < s->num_jobs && s->rows[end].student == s->rows[j].student) end++;
        if (host_of(s, s->rows[j].student) == s->rank) status = run_student_jobs(s, j, end);
        j = end;
    }
    return status;
}

/* ---- collecting the rows ------------------------------------------------------- */

enum { FIELD_T, FIELD_WEIGHT, FIELD_BEFORE, FIELD_AFTER, FIELD_VALIDATION, FIELD_PEERS,
       FIELD_STEPS, FIELD_SECONDS, FIELD_DIVERGED, FIELD_TEACHER_SHARE, NUM_FIELDS };

static fedkd_status collect_rows(study *s)
{
    size_t length = (size_t)s->num_jobs * NUM_FIELDS;
    double *mine = calloc(length ? length : 1, sizeof *mine);
    double *all = calloc(length ? length : 1, sizeof *all);
    fedkd_status status = fedkd_comm_agree(s->comm, mine && all ? FEDKD_OK
                                   : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the results"));
    if (status) goto done;
    for (int j = 0; j < s->num_jobs; j++) {
        const kd_study_row *row = &s->rows[j];
        if (host_of(s, row->student) != s->rank) continue;
        double *f = mine + (size_t)j * NUM_FIELDS;
        f[FIELD_T] = row->temperature;
        f[FIELD_WEIGHT] = row->weight;
        f[FIELD_BEFORE] = row->before;
        f[FIELD_AFTER] = row->after;
        f[FIELD_VALIDATION] = row->validation;
        f[FIELD_PEERS] = row->peers;
        f[FIELD_STEPS] = (double)row->steps;
        f[FIELD_SECONDS] = row->seconds;
        f[FIELD_DIVERGED] = row->diverged;
        f[FIELD_TEACHER_SHARE] = row->teacher_share;
    }
    /* Exactly one rank fills each row; adding zeros (NaN stays NaN) is exact. */
    MPI_Request request;
    if (MPI_Ireduce(mine, all, (int)length, MPI_DOUBLE, MPI_SUM, 0, s->comm, &request) !=
        MPI_SUCCESS)
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ireduce of the kd-study results failed");
    else
        status = fedkd_comm_wait(&request, "the kd-study results");
    if (status || s->rank != 0) goto done;
    for (int j = 0; j < s->num_jobs; j++) {
        kd_study_row *row = &s->rows[j];
        const double *f = all + (size_t)j * NUM_FIELDS;
        row->temperature = f[FIELD_T];
        row->weight = f[FIELD_WEIGHT];
        row->before = f[FIELD_BEFORE];
        row->after = f[FIELD_AFTER];
        row->validation = f[FIELD_VALIDATION];
        row->peers = (int)f[FIELD_PEERS];
        row->steps = (long)f[FIELD_STEPS];
        row->seconds = f[FIELD_SECONDS];
        row->diverged = (int)f[FIELD_DIVERGED];
        row->teacher_share = f[FIELD_TEACHER_SHARE];
    }
done:
    free(mine);
    free(all);
    return status;
}

/* ---- the runner ------------------------------------------------------------------ */

static void free_study(study *s)
{
    int n = s->config->clients.count;
    for (int c = 0; s->params && c < n; c++)
        if (s->owned[c]) free(s->params[c]);
    free(s->params);
    free(s->owned);
    free(s->specs);
    free(s->num_params);
    free(s->rows);
    free(s->teacher_pool);
    free(s->students);
    kd_sealed_destroy(&s->test);
    fedkd_dataset_destroy(&s->public_validation);
    fedkd_dataset_destroy(&s->public_transfer_part);
    for (int h = 0; s->local_validation && h < s->clients.num_hosted; h++)
        fedkd_dataset_destroy(&s->local_validation[h]);
    free(s->local_validation);
    kd_pretrained_free(s->pretrained, s->clients.num_hosted);
    free(s->pretrained);
    kd_clients_free(&s->clients);
}

static fedkd_status setup(study *s)
{
    int n = s->config->clients.count;
    fedkd_status status = read_settings(s);
    status = fedkd_comm_agree(s->comm, status);
    if (status) return status;
    status = kd_clients_load(s->config, s->rank, s->size, s->data_flags, &s->clients);
    if (!status) {
        s->pretrained = calloc((size_t)(s->clients.num_hosted ? s->clients.num_hosted : 1),
                               sizeof *s->pretrained);
        s->specs = calloc((size_t)n, sizeof *s->specs);
        s->num_params = calloc((size_t)n, sizeof *s->num_params);
        s->params = calloc((size_t)n, sizeof *s->params);
        s->owned = calloc((size_t)n, 1);
        if (!s->pretrained || !s->specs || !s->num_params || !s->params || !s->owned)
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client models");
    }
    if (!status) status = prepare_sets(s);
    if (!status) status = build_jobs(s);
    status = fedkd_comm_agree(s->comm, status);
    if (status) return status;
    if (s->rank == 0) {
        char scheme[64];
        kd_scheme_label(s->config, scheme, sizeof scheme);
        fedkd_log_info("kd-study: %d clients on %d rank(s), partition %s, %d student(s), pairs "
                       "%s, %d method(s), %d runs; KD on %s data, tuning validated on %s data",
                       n, s->size, scheme, s->num_students, s->config->kd.pairs, s->num_methods,
                       s->num_jobs, s->config->kd.transfer, s->config->kd.validation);
    }
    status = kd_pretrain_hosted(s->config, &s->clients, s->pretrained);
    status = kd_pretrain_report(s->config, s->comm, &s->clients, s->pretrained, status);
    if (status) return status;
    /* From here on the test set exists only as a sealed copy, readable only
     * while a distilled student is scored. */
    if (s->clients.test) {
        status = kd_sealed_create(&s->test, s->clients.test);
        if (!status) status = kd_sealed_lock(&s->test);
        fedkd_dataset_destroy(&s->clients.set.test);
        s->clients.test = NULL;
    }
    status = fedkd_comm_agree(s->comm, status);
    if (status) return status;
    return distribute_models(s);
}

fedkd_status fedkd_run_kd_study(const fedkd_config *config, MPI_Comm comm,
                                const fedkd_run_options *options, fedkd_run_result *result)
{
    study st;
    memset(&st, 0, sizeof st);
    study *s = &st;
    s->config = config;
    s->data_flags = options ? options->data_flags : 0;
    /* The public set's rows are held out whenever tuning or KD looks at
     * them (fedkd_mode_data_flags says the same for pretrain). */
    if (fedkd_kd_uses_public(config)) s->data_flags |= FEDKD_CLIENTSET_PUBLIC;
    s->comm = comm;
    MPI_Comm_rank(comm, &s->rank);
    MPI_Comm_size(comm, &s->size);
    memset(result, 0, sizeof *result);
    double start = fedkd_time_now();

    fedkd_status status = setup(s);
    if (!status) {
        status = run_hosted_jobs(s);
        /* Everyone reaches the collection, failed or not, then agrees. */
        fedkd_status collected = collect_rows(s);
        status = fedkd_comm_agree(comm, status ? status : collected);
    }
    if (!status) {
        s->totals.num_clients = config->clients.count;
        s->totals.wall_seconds = fedkd_time_now() - start;
        if (s->rank == 0)
            status = kd_study_write(config, s->methods, s->num_methods, s->rows, s->num_jobs,
                                    &s->totals);
        status = fedkd_comm_agree(comm, status);
    }
    result->wall_seconds = fedkd_time_now() - start;
    result->bytes_down_total = s->totals.teacher_bytes;
    result->wire_bytes_total = s->totals.wire_bytes;
    free_study(s);
    return status;
}
