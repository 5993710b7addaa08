/* Properties of the KD methods between pre-trained models that follow from
 * their definitions (../shared/METHODS.md), on a synthetic task and a tiny
 * dense model:
 * - vanilla KD with a = 0 is plain training, bit for bit (same stream keys);
 * - a student distilled at a = 1 from a teacher identical to itself stays
 *   put: the KL gradient softmax_T(z) - softmax_T(z) is 0 whenever the
 *   teacher's logits equal the student's, which they do up to the last bits
 *   of the matrix products (teacher logits are computed in batches of a
 *   different size); |change| <= 1e-5, against a change > 1e-2 when the
 *   teacher differs;
 * - DML with K = 1 is plain training, bit for bit; two identical peers also
 *   train exactly as alone (their KL gradients are exactly 0); different
 *   peers change the student;
 * - an ensemble of identical teachers equals the single teacher, bit for
 *   bit, with probabilities and with logits averaged;
 * - partition-aware weights follow the histograms; with no class favouring
 *   the teacher it is plain training, with all of them it is vanilla KD;
 * - tuned KD with a one-point grid is vanilla KD at that point; its choice
 *   lies on the grid and ties go to the smaller T, then the smaller a; grid
 *   points whose training diverges are skipped and counted;
 * - tuned KD runs with the test set sealed (unreadable pages) and does not
 *   fault; a read of the sealed set does fault (checked in a child), so the
 *   seal is real;
 * - data-partitioning routing on hand-made logits: ties go to the frozen
 *   student, the supervised rule reads the true label and the unsupervised
 *   one the top probability, several teachers compete;
 * - data-partitioning KD with a teacher identical to the student routes
 *   nothing to it and changes nothing (vanilla KD from that twin, bit for
 *   bit, and at a = 1 the student stays put); with a teacher more confident
 *   on every sample it is vanilla KD at a = 1, bit for bit, share 1; a real
 *   teacher gets a share strictly between 0 and 1;
 * - every tuned method with a one-point grid is its base method at that
 *   point; with a separate validation set the grid trains on the whole
 *   transfer set and reports the chosen point's validation accuracy;
 * - the public split sizes, seeded splits, the label and overlap checks,
 *   which methods read labels, old method names;
 * - bad input: unknown methods, grids with T <= 0 or weights outside
 *   [0, 1], teachers with other classes. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fedkd/core/core.h"
#include "fedkd/kd/kd.h"
#include "fedkd/nn/model_json.h"
#include "experiments/experiments_private.h"
#include "../test_util.h"

enum { FEATURES = 8, CLASSES = 3, STUDENT = 5 };

static fedkd_dataset *train_data, *test_data;
static fedkd_model_spec spec;

static int message_has(const char *text)
{
    return strstr(fedkd_error_message(), text) != NULL;
}

static void setup(void)
{
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    s.count = 240;
    s.shape = (fedkd_shape){FEATURES, 1, 1};
    s.num_classes = CLASSES;
    s.separation = 1.0f;
    s.seed = 11;
    fedkd_status status = fedkd_synthetic_generate(&train_data, &s);
    s.count = 120;
    s.stream = 1;
    if (!status) status = fedkd_synthetic_generate(&test_data, &s);
    cJSON *layers = cJSON_Parse("[{\"type\":\"dense\",\"units\":16},{\"type\":\"relu\"},"
                                "{\"type\":\"dense\",\"units\":3}]");
    if (!status) status = fedkd_model_spec_from_json(&spec, layers, s.shape, CLASSES, "test");
    cJSON_Delete(layers);
    if (status) {
        fprintf(stderr, "setup: %s\n", fedkd_error_message());
        exit(1);
    }
}

static fedkd_kd_settings test_settings(void)
{
    fedkd_kd_settings s = fedkd_kd_default_settings();
    s.seed = 3;
    s.epochs = 2;
    s.batch_size = 16;
    s.optimizer.lr = 0.05f;
    s.optimizer.momentum = 0.9f;
    return s;
}

/* A model with seeded weights, trained `epochs` epochs on train_data with
 * a stream of its own (a pre-trained model). */
static fedkd_model *make_model(uint64_t id, int epochs)
{
    fedkd_model *model = NULL;
    fedkd_optimizer *optimizer = NULL;
    fedkd_optimizer_settings opt = fedkd_optimizer_default_settings();
    opt.lr = 0.05f;
    if (fedkd_model_create(&model, &spec, 64) ||
        fedkd_optimizer_create(&optimizer, &opt, model->num_params)) {
        fprintf(stderr, "make_model: %s\n", fedkd_error_message());
        exit(1);
    }
    fedkd_model_init_params(model, 5, id);
    fedkd_train_settings train = fedkd_train_default_settings();
    train.epochs = epochs;
    train.batch_size = 16;
    train.seed = 5;
    train.stream_a = id;
    fedkd_train_stats stats;
    if (epochs > 0 && fedkd_train_local(model, optimizer, train_data, &train, &stats)) exit(1);
    fedkd_optimizer_destroy(&optimizer);
    return model;
}

static fedkd_model *copy_model(const fedkd_model *source)
{
    fedkd_model *model = NULL;
    if (fedkd_model_create(&model, &source->spec, source->max_batch)) exit(1);
    memcpy(model->params, source->params, model->num_params * sizeof(float));
    return model;
}

/* Plain training as a KD run of student STUDENT would shuffle it. */
static void plain_train(fedkd_model *model, const fedkd_kd_settings *s)
{
    fedkd_optimizer *optimizer = NULL;
    if (fedkd_optimizer_create(&optimizer, &s->optimizer, model->num_params)) exit(1);
    fedkd_train_settings train = fedkd_train_default_settings();
    train.epochs = s->epochs;
    train.batch_size = s->batch_size;
    train.seed = s->seed;
    train.stream_a = STUDENT;
    train.stream_b = FEDKD_KD_STREAM;
    fedkd_train_stats stats;
    fedkd_status status = fedkd_train_local(model, optimizer, train_data, &train, &stats);
    CHECK(status == FEDKD_OK, "plain training: %s", fedkd_error_message());
    fedkd_optimizer_destroy(&optimizer);
}

typedef struct teacher_set {
    int count;
    fedkd_kd_teacher teachers[4];
    float *logits[4];
    uint32_t histograms[4][CLASSES];
} teacher_set;

static void add_teacher(teacher_set *set, const fedkd_model *model, int client,
                        const uint32_t *histogram)
{
    int t = set->count++;
    if (fedkd_kd_compute_logits(&model->spec, model->params, train_data, 50, &set->logits[t]))
        exit(1);
    memcpy(set->histograms[t], histogram, sizeof set->histograms[t]);
    set->teachers[t] = (fedkd_kd_teacher){.client = client, .spec = &model->spec,
                                          .params = model->params, .logits = set->logits[t],
                                          .histogram = set->histograms[t]};
}

static void free_teachers(teacher_set *set)
{
    for (int t = 0; t < set->count; t++) fedkd_free(set->logits[t]);
    set->count = 0;
}

static const uint32_t even_histogram[CLASSES] = {80, 80, 80};

static fedkd_status distil(const char *method_name, const fedkd_kd_settings *s,
                           fedkd_model *student, const teacher_set *set, fedkd_kd_outcome *out)
{
    const fedkd_kd_method *method = NULL;
    fedkd_status status = fedkd_kd_method_find(method_name, &method);
    if (status) return status;
    fedkd_kd_job job = {.student_client = STUDENT, .student = student, .transfer = train_data,
                        .student_histogram = even_histogram, .num_teachers = set->count,
                        .teachers = set->teachers};
    fedkd_kd_outcome outcome = {.validation_accuracy = -1.0, .num_peers = 1, .teacher_share = NAN};
    status = method->distil(s, &job, &outcome);
    if (out) *out = outcome;
    return status;
}

static double max_difference(const fedkd_model *a, const fedkd_model *b)
{
    double worst = 0.0;
    for (size_t i = 0; i < a->num_params; i++)
        worst = fmax(worst, fabs((double)a->params[i] - (double)b->params[i]));
    return worst;
}

/* Teacher shares: equal, or both NaN (methods that route nothing). */
static int same_share(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

static int identical(const fedkd_model *a, const fedkd_model *b)
{
    return a->num_params == b->num_params &&
           memcmp(a->params, b->params, a->num_params * sizeof(float)) == 0;
}

static void check_weight_zero_is_plain_training(fedkd_model *pretrained, fedkd_model *teacher)
{
    fedkd_kd_settings s = test_settings();
    s.weight = 0.0f;
    s.temperature = 4.0f;
    teacher_set set = {0};
    add_teacher(&set, teacher, 1, even_histogram);
    fedkd_model *kd = copy_model(pretrained), *plain = copy_model(pretrained);
    fedkd_status status = distil("vanilla", &s, kd, &set, NULL);
    CHECK(status == FEDKD_OK, "vanilla a=0: %s", fedkd_error_message());
    plain_train(plain, &s);
    CHECK(identical(kd, plain), "KD at a = 0 differs from plain training by %g",
          max_difference(kd, plain));
    CHECK(max_difference(kd, pretrained) > 1e-3, "the student did not train");
    fedkd_model_destroy(&kd);
    fedkd_model_destroy(&plain);
    free_teachers(&set);
}

static void check_identical_teacher_keeps_student(fedkd_model *pretrained, fedkd_model *other)
{
    const float temperatures[] = {1.0f, 4.0f};
    for (int i = 0; i < 2; i++) {
        fedkd_kd_settings s = test_settings();
        s.weight = 1.0f;
        s.temperature = temperatures[i];
        teacher_set set = {0};
        add_teacher(&set, pretrained, STUDENT, even_histogram);
        fedkd_model *student = copy_model(pretrained);
        fedkd_status status = distil("vanilla", &s, student, &set, NULL);
        CHECK(status == FEDKD_OK, "vanilla a=1: %s", fedkd_error_message());
        double moved = max_difference(student, pretrained);
        CHECK(moved <= 1e-5, "T=%g: a student distilled from itself moved by %g",
              (double)temperatures[i], moved);
        free_teachers(&set);
        /* The same with a different teacher moves it: the check can fail. */
        add_teacher(&set, other, 1, even_histogram);
        memcpy(student->params, pretrained->params, student->num_params * sizeof(float));
        status = distil("vanilla", &s, student, &set, NULL);
        CHECK(status == FEDKD_OK && max_difference(student, pretrained) > 1e-2,
              "T=%g: a different teacher moved the student only by %g", (double)temperatures[i],
              max_difference(student, pretrained));
        free_teachers(&set);
        fedkd_model_destroy(&student);
    }
}

static void check_mutual_learning(fedkd_model *pretrained, fedkd_model *other)
{
    fedkd_kd_settings s = test_settings();
    teacher_set none = {0};
    /* K = 1 */
    s.peers = 1;
    fedkd_model *dml = copy_model(pretrained), *plain = copy_model(pretrained);
    fedkd_kd_outcome outcome;
    fedkd_status status = distil("dml", &s, dml, &none, &outcome);
    CHECK(status == FEDKD_OK, "dml K=1: %s", fedkd_error_message());
    plain_train(plain, &s);
    CHECK(identical(dml, plain), "DML with K = 1 differs from plain training by %g",
          max_difference(dml, plain));
    CHECK(outcome.num_peers == 1, "peers %d", outcome.num_peers);

    /* K = 2 with a peer identical to the student: KL gradients are 0. */
    s.peers = 2;
    teacher_set twin = {0};
    add_teacher(&twin, pretrained, 1, even_histogram);
    memcpy(dml->params, pretrained->params, dml->num_params * sizeof(float));
    status = distil("dml", &s, dml, &twin, &outcome);
    CHECK(status == FEDKD_OK, "dml twin: %s", fedkd_error_message());
    CHECK(identical(dml, plain), "DML with an identical peer differs from plain training by %g",
          max_difference(dml, plain));
    CHECK(outcome.num_peers == 2 && isnan(outcome.weight) && outcome.temperature == 1.0f,
          "dml outcome: peers %d T %g weight %g", outcome.num_peers,
          (double)outcome.temperature, (double)outcome.weight);
    free_teachers(&twin);

    /* A different peer pulls the student away from plain training. */
    teacher_set different = {0};
    add_teacher(&different, other, 1, even_histogram);
    memcpy(dml->params, pretrained->params, dml->num_params * sizeof(float));
    status = distil("dml", &s, dml, &different, NULL);
    CHECK(status == FEDKD_OK && max_difference(dml, plain) > 1e-3,
          "DML with a different peer matches plain training (difference %g)",
          max_difference(dml, plain));
    /* Too few teachers for K = 3. */
    s.peers = 3;
    status = distil("dml", &s, dml, &different, NULL);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("config key `kd.peers`"),
          "dml K=3 with one teacher: %s", fedkd_error_message());
    free_teachers(&different);
    fedkd_model_destroy(&dml);
    fedkd_model_destroy(&plain);
}

static void check_ensemble_of_identical_teachers(fedkd_model *pretrained, fedkd_model *teacher)
{
    for (int rule = 0; rule < 2; rule++) {
        fedkd_kd_settings s = test_settings();
        s.temperature = 2.0f;
        s.weight = 0.7f;
        s.ensemble_logits = rule;
        teacher_set one = {0}, three = {0};
        add_teacher(&one, teacher, 1, even_histogram);
        for (int t = 0; t < 3; t++) add_teacher(&three, teacher, 1 + t, even_histogram);
        fedkd_model *single = copy_model(pretrained), *ensemble = copy_model(pretrained);
        fedkd_status status = distil("vanilla", &s, single, &one, NULL);
        if (!status) status = distil("ensemble", &s, ensemble, &three, NULL);
        CHECK(status == FEDKD_OK, "ensemble: %s", fedkd_error_message());
        CHECK(identical(single, ensemble),
              "rule %s: 3 identical teachers differ from one by %g", rule ? "logits" : "probs",
              max_difference(single, ensemble));
        CHECK(max_difference(single, pretrained) > 1e-3, "ensemble KD did not train");
        free_teachers(&one);
        free_teachers(&three);
        fedkd_model_destroy(&single);
        fedkd_model_destroy(&ensemble);
    }
}

static void check_partition_aware(fedkd_model *pretrained, fedkd_model *teacher)
{
    /* The rule itself: KD weight where the teachers' mean count beats the
     * student's. */
    teacher_set set = {0};
    const uint32_t t1[CLASSES] = {10, 50, 0}, t2[CLASSES] = {30, 0, 0};
    const uint32_t student_counts[CLASSES] = {19, 25, 0};
    add_teacher(&set, teacher, 1, t1);
    add_teacher(&set, teacher, 2, t2);
    float weights[CLASSES];
    fedkd_kd_partition_weights(student_counts, set.teachers, 2, CLASSES, 0.6f, weights);
    /* means: 20 > 19 yes; 25 > 25 no; 0 > 0 no */
    CHECK(weights[0] == 0.6f && weights[1] == 0.0f && weights[2] == 0.0f,
          "partition weights %g %g %g", (double)weights[0], (double)weights[1],
          (double)weights[2]);
    free_teachers(&set);

    fedkd_kd_settings s = test_settings();
    s.temperature = 3.0f;
    s.weight = 0.8f;
    /* The teacher saw less of every class than the student: plain CE. */
    const uint32_t fewer[CLASSES] = {1, 2, 3};
    add_teacher(&set, teacher, 1, fewer);
    fedkd_model *aware = copy_model(pretrained), *plain = copy_model(pretrained);
    fedkd_status status = distil("partition-aware", &s, aware, &set, NULL);
    CHECK(status == FEDKD_OK, "partition-aware: %s", fedkd_error_message());
    plain_train(plain, &s);
    CHECK(identical(aware, plain), "partition-aware with no favoured class differs from plain "
          "training by %g", max_difference(aware, plain));
    free_teachers(&set);
    /* ... more of every class: vanilla KD. */
    const uint32_t more[CLASSES] = {81, 90, 100};
    add_teacher(&set, teacher, 1, more);
    fedkd_model *vanilla = copy_model(pretrained);
    memcpy(aware->params, pretrained->params, aware->num_params * sizeof(float));
    status = distil("partition-aware", &s, aware, &set, NULL);
    if (!status) status = distil("vanilla", &s, vanilla, &set, NULL);
    CHECK(status == FEDKD_OK, "partition-aware: %s", fedkd_error_message());
    CHECK(identical(aware, vanilla), "partition-aware with every class favoured differs from "
          "vanilla KD by %g", max_difference(aware, vanilla));
    CHECK(!identical(aware, plain), "vanilla KD equals plain training: the check cannot fail");
    free_teachers(&set);
    fedkd_model_destroy(&aware);
    fedkd_model_destroy(&plain);
    fedkd_model_destroy(&vanilla);
}

static void check_tuned(fedkd_model *pretrained, fedkd_model *teacher)
{
    fedkd_kd_settings s = test_settings();
    teacher_set set = {0};
    add_teacher(&set, teacher, 1, even_histogram);
    /* A one-point grid is vanilla KD at that point. */
    s.num_temperatures = 1;
    s.temperature_grid[0] = 4.0f;
    s.num_weights = 1;
    s.weight_grid[0] = 0.75f;
    s.temperature = 4.0f;
    s.weight = 0.75f;
    fedkd_model *tuned = copy_model(pretrained), *vanilla = copy_model(pretrained);
    fedkd_kd_outcome outcome;
    fedkd_status status = distil("tuned", &s, tuned, &set, &outcome);
    if (!status) status = distil("vanilla", &s, vanilla, &set, NULL);
    CHECK(status == FEDKD_OK, "tuned: %s", fedkd_error_message());
    CHECK(identical(tuned, vanilla), "tuned with one grid point differs from vanilla by %g",
          max_difference(tuned, vanilla));
    CHECK(outcome.temperature == 4.0f && outcome.weight == 0.75f, "choice %g %g",
          (double)outcome.temperature, (double)outcome.weight);
    CHECK(outcome.validation_accuracy >= 0.0 && outcome.validation_accuracy <= 1.0,
          "validation accuracy %g", outcome.validation_accuracy);

    /* Ties go to the smaller T, then the smaller a: with a = 0 at every
     * grid point (plain training) every point scores the same. */
    s = test_settings();
    const float ts[] = {8.0f, 2.0f, 4.0f}, as[] = {0.0f};
    s.num_temperatures = 3;
    memcpy(s.temperature_grid, ts, sizeof ts);
    s.num_weights = 1;
    memcpy(s.weight_grid, as, sizeof as);
    memcpy(tuned->params, pretrained->params, tuned->num_params * sizeof(float));
    status = distil("tuned", &s, tuned, &set, &outcome);
    CHECK(status == FEDKD_OK && outcome.temperature == 2.0f && outcome.weight == 0.0f,
          "tie choice %g %g: %s", (double)outcome.temperature, (double)outcome.weight,
          fedkd_error_message());

    /* Grid points whose training diverges are skipped and counted; when all
     * diverge, tuning fails with a message. A teacher with a NaN logit makes
     * every point with a > 0 diverge; at a = 0 the teacher is not used. */
    teacher_set broken = {0};
    add_teacher(&broken, teacher, 1, even_histogram);
    broken.logits[0][7 * CLASSES + 1] = NAN;
    s = test_settings();
    const float two_t[] = {1.0f, 2.0f}, two_a[] = {0.0f, 0.5f};
    s.num_temperatures = 2;
    memcpy(s.temperature_grid, two_t, sizeof two_t);
    s.num_weights = 2;
    memcpy(s.weight_grid, two_a, sizeof two_a);
    memcpy(tuned->params, pretrained->params, tuned->num_params * sizeof(float));
    status = distil("tuned", &s, tuned, &broken, &outcome);
    CHECK(status == FEDKD_OK && outcome.diverged == 2 && outcome.temperature == 1.0f &&
              outcome.weight == 0.0f,
          "divergent points: diverged %d, choice %g %g: %s", outcome.diverged,
          (double)outcome.temperature, (double)outcome.weight, fedkd_error_message());
    s.num_weights = 1;
    s.weight_grid[0] = 0.5f;
    memcpy(tuned->params, pretrained->params, tuned->num_params * sizeof(float));
    status = distil("tuned", &s, tuned, &broken, &outcome);
    CHECK(status == FEDKD_ERR_NUMERIC && message_has("diverged at every point of the grid"),
          "all points diverge: %s", fedkd_error_message());
    free_teachers(&broken);

    /* The full default grid, with the test set sealed the whole time. */
    kd_sealed sealed;
    status = kd_sealed_create(&sealed, test_data);
    if (!status) status = kd_sealed_lock(&sealed);
    CHECK(status == FEDKD_OK, "seal: %s", fedkd_error_message());
    s = test_settings();
    s.epochs = 1;
    memcpy(tuned->params, pretrained->params, tuned->num_params * sizeof(float));
    status = distil("tuned", &s, tuned, &set, &outcome);
    CHECK(status == FEDKD_OK, "tuned under seal: %s", fedkd_error_message());
    int on_grid_t = 0, on_grid_a = 0;
    for (int i = 0; i < s.num_temperatures; i++) on_grid_t |= s.temperature_grid[i] == outcome.temperature;
    for (int i = 0; i < s.num_weights; i++) on_grid_a |= s.weight_grid[i] == outcome.weight;
    CHECK(on_grid_t && on_grid_a, "choice %g %g is not on the grid", (double)outcome.temperature,
          (double)outcome.weight);
    /* 24 of 240 samples held out: 25 grid points x ceil(216 / 16) steps on
     * the training part, then ceil(240 / 16) on all of it. */
    CHECK(outcome.steps == 25L * 14 + 15, "steps %ld, expected %ld", outcome.steps,
          25L * 14 + 15);
    /* The seal is real: reading a sealed sample in a child faults. */
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        /* The sanitizers' report of the expected fault would only be noise. */
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        volatile float x = sealed.view.features[0];
        (void)x;
        _exit(0);
    }
    int wstatus = 0;
    waitpid(child, &wstatus, 0);
    CHECK(!(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0),
          "reading the sealed test set did not fault");
    status = kd_sealed_unlock(&sealed);
    CHECK(status == FEDKD_OK && sealed.view.labels[3] == test_data->labels[3] &&
          sealed.view.features[7] == test_data->features[7],
          "unsealed copy differs from the test set");
    double accuracy = 0.0, loss = 0.0;
    status = fedkd_evaluate(tuned, &sealed.view, &accuracy, &loss);
    CHECK(status == FEDKD_OK && accuracy > 0.4, "tuned student's test accuracy %g", accuracy);
    kd_sealed_destroy(&sealed);
    free_teachers(&set);
    fedkd_model_destroy(&tuned);
    fedkd_model_destroy(&vanilla);
}


/* ---- data-partitioning KD -------------------------------------------------- */

static void check_routing(void)
{
    /* 3 samples, 3 classes; labels 0, 1, 1. */
    const float frozen[] = {2, 0, 0, 0, 1, 0, 1, 0, 0};
    const float a[] = {2, 0, 0, 0, 3, 0, 5, 0, 0};
    const float b[] = {4, 0, 0, 0, 3, 0, 0, 0, 0};
    const int32_t labels[] = {0, 1, 1};
    fedkd_kd_teacher teachers[2] = {{.client = 1, .logits = a}, {.client = 2, .logits = b}};
    int route[3];
    /* One teacher. Sample 0 ties (identical logits): the frozen student.
     * Sample 1: the teacher. Sample 2: the teacher is sure of the wrong
     * class: supervised keeps the frozen student, unsupervised takes it. */
    size_t n = fedkd_kd_route(frozen, teachers, 1, labels, 3, 3, FEDKD_KD_CONFIDENCE_SUPERVISED,
                              route);
    CHECK(n == 1 && route[0] == 0 && route[1] == 1 && route[2] == 0,
          "supervised routing %zu: %d %d %d", n, route[0], route[1], route[2]);
    n = fedkd_kd_route(frozen, teachers, 1, labels, 3, 3, FEDKD_KD_CONFIDENCE_UNSUPERVISED, route);
    CHECK(n == 2 && route[0] == 0 && route[1] == 1 && route[2] == 1,
          "unsupervised routing %zu: %d %d %d", n, route[0], route[1], route[2]);
    /* Two teachers: sample 0 to the second (more confident), sample 1 ties
     * between the teachers (the first keeps it), sample 2: the uniform
     * second teacher gives the true label 1/3, more than the frozen
     * student's 0.21 (supervised), less than the first's top (unsupervised). */
    n = fedkd_kd_route(frozen, teachers, 2, labels, 3, 3, FEDKD_KD_CONFIDENCE_SUPERVISED, route);
    CHECK(n == 3 && route[0] == 2 && route[1] == 1 && route[2] == 2,
          "two teachers, supervised %zu: %d %d %d", n, route[0], route[1], route[2]);
    n = fedkd_kd_route(frozen, teachers, 2, labels, 3, 3, FEDKD_KD_CONFIDENCE_UNSUPERVISED, route);
    CHECK(n == 3 && route[0] == 2 && route[1] == 1 && route[2] == 1,
          "two teachers, unsupervised %zu: %d %d %d", n, route[0], route[1], route[2]);
}

/* A teacher given by its logits on train_data: `scale` x one-hot of the
 * label shifted by `shift` classes. */
static void add_crafted_teacher(teacher_set *set, const fedkd_model *model, float scale, int shift)
{
    int t = set->count++;
    set->logits[t] = fedkd_alloc(train_data->count * CLASSES * sizeof(float));
    if (!set->logits[t]) exit(1);
    for (size_t i = 0; i < train_data->count; i++)
        for (int c = 0; c < CLASSES; c++)
            set->logits[t][i * CLASSES + (size_t)c] =
                c == (train_data->labels[i] + shift) % CLASSES ? scale : 0.0f;
    memcpy(set->histograms[t], even_histogram, sizeof set->histograms[t]);
    set->teachers[t] = (fedkd_kd_teacher){.client = 1 + t, .spec = &model->spec,
                                          .params = model->params, .logits = set->logits[t],
                                          .histogram = set->histograms[t]};
}

static void check_data_partitioning(fedkd_model *pretrained, fedkd_model *teacher)
{
    fedkd_kd_settings s = test_settings();
    fedkd_kd_outcome outcome;
    /* A twin teacher, its logits computed as the frozen copy's are. */
    teacher_set twin = {0};
    twin.count = 1;
    if (fedkd_kd_compute_logits(&pretrained->spec, pretrained->params, train_data, s.logit_batch,
                                &twin.logits[0]))
        exit(1);
    memcpy(twin.histograms[0], even_histogram, sizeof twin.histograms[0]);
    twin.teachers[0] = (fedkd_kd_teacher){.client = 1, .spec = &pretrained->spec,
                                          .params = pretrained->params, .logits = twin.logits[0],
                                          .histogram = twin.histograms[0]};
    fedkd_model *dp = copy_model(pretrained), *vanilla = copy_model(pretrained);
    const float weights[] = {0.6f, 1.0f};
    for (int i = 0; i < 2; i++) {
        s.weight = weights[i];
        s.temperature = 2.0f;
        memcpy(dp->params, pretrained->params, dp->num_params * sizeof(float));
        memcpy(vanilla->params, pretrained->params, dp->num_params * sizeof(float));
        fedkd_status status = distil("data-partitioning", &s, dp, &twin, &outcome);
        if (!status) status = distil("vanilla", &s, vanilla, &twin, NULL);
        CHECK(status == FEDKD_OK, "data-partitioning, twin: %s", fedkd_error_message());
        CHECK(outcome.teacher_share == 0.0, "a twin teacher got share %g", outcome.teacher_share);
        CHECK(identical(dp, vanilla), "a = %g: data-partitioning from a twin differs from KD "
              "from the twin by %g", (double)weights[i], max_difference(dp, vanilla));
    }
    CHECK(max_difference(dp, pretrained) <= 1e-5, "a = 1: a twin teacher moved the student by %g",
          max_difference(dp, pretrained));
    free_teachers(&twin);

    /* A teacher more confident on every sample (scale 20 on the true
     * label), at a = 1: vanilla KD, whatever T. */
    teacher_set sure = {0};
    add_crafted_teacher(&sure, teacher, 20.0f, 0);
    s.weight = 1.0f;
    s.temperature = 4.0f;
    memcpy(dp->params, pretrained->params, dp->num_params * sizeof(float));
    memcpy(vanilla->params, pretrained->params, dp->num_params * sizeof(float));
    fedkd_status status = distil("data-partitioning", &s, dp, &sure, &outcome);
    if (!status) status = distil("vanilla", &s, vanilla, &sure, NULL);
    CHECK(status == FEDKD_OK && outcome.teacher_share == 1.0,
          "confident teacher: share %g: %s", outcome.teacher_share, fedkd_error_message());
    CHECK(identical(dp, vanilla), "a confident teacher: data-partitioning differs from vanilla "
          "KD by %g", max_difference(dp, vanilla));
    CHECK(max_difference(dp, pretrained) > 1e-3, "a confident teacher did not move the student");
    free_teachers(&sure);

    /* Sure of the wrong class: the supervised rule routes nothing to it
     * (the student stays put at a = 1), the unsupervised rule everything. */
    teacher_set wrong = {0};
    add_crafted_teacher(&wrong, teacher, 20.0f, 1);
    memcpy(dp->params, pretrained->params, dp->num_params * sizeof(float));
    status = distil("data-partitioning", &s, dp, &wrong, &outcome);
    CHECK(status == FEDKD_OK && outcome.teacher_share == 0.0 &&
              max_difference(dp, pretrained) <= 1e-5,
          "supervised, wrong teacher: share %g, moved %g", outcome.teacher_share,
          max_difference(dp, pretrained));
    s.confidence = FEDKD_KD_CONFIDENCE_UNSUPERVISED;
    memcpy(dp->params, pretrained->params, dp->num_params * sizeof(float));
    memcpy(vanilla->params, pretrained->params, dp->num_params * sizeof(float));
    status = distil("data-partitioning", &s, dp, &wrong, &outcome);
    if (!status) status = distil("vanilla", &s, vanilla, &wrong, NULL);
    CHECK(status == FEDKD_OK && outcome.teacher_share == 1.0 && identical(dp, vanilla),
          "unsupervised, wrong teacher: share %g, differs from vanilla by %g",
          outcome.teacher_share, max_difference(dp, vanilla));
    free_teachers(&wrong);

    /* A real teacher takes some samples, not all. */
    s = test_settings();
    s.weight = 1.0f;
    teacher_set real = {0};
    add_teacher(&real, teacher, 1, even_histogram);
    memcpy(dp->params, pretrained->params, dp->num_params * sizeof(float));
    memcpy(vanilla->params, pretrained->params, dp->num_params * sizeof(float));
    status = distil("data-partitioning", &s, dp, &real, &outcome);
    if (!status) status = distil("vanilla", &s, vanilla, &real, NULL);
    CHECK(status == FEDKD_OK && outcome.teacher_share > 0.0 && outcome.teacher_share < 1.0,
          "a real teacher's share %g: %s", outcome.teacher_share, fedkd_error_message());
    CHECK(!identical(dp, vanilla) && max_difference(dp, pretrained) > 1e-3,
          "a real teacher: data-partitioning equals vanilla KD or did not train");
    /* Vanilla KD reports no share. */
    fedkd_kd_outcome plain = {.teacher_share = NAN};
    status = distil("vanilla", &s, vanilla, &real, &plain);
    CHECK(status == FEDKD_OK && isnan(plain.teacher_share), "vanilla reported share %g",
          plain.teacher_share);
    free_teachers(&real);
    fedkd_model_destroy(&dp);
    fedkd_model_destroy(&vanilla);
}

/* Runs `name` with `validation` as the job's validation set (NULL: split). */
static fedkd_status distil_with_validation(const char *name, const fedkd_kd_settings *s,
                                           fedkd_model *student, const teacher_set *set,
                                           const fedkd_dataset *validation, fedkd_kd_outcome *out)
{
    const fedkd_kd_method *method = NULL;
    fedkd_status status = fedkd_kd_method_find(name, &method);
    if (status) return status;
    fedkd_kd_job job = {.student_client = STUDENT, .student = student, .transfer = train_data,
                        .validation = validation, .student_histogram = even_histogram,
                        .num_teachers = set->count, .teachers = set->teachers};
    *out = (fedkd_kd_outcome){.validation_accuracy = NAN, .num_peers = 1, .teacher_share = NAN};
    return method->distil(s, &job, out);
}

static void check_tuned_methods(fedkd_model *pretrained, fedkd_model *teacher)
{
    fedkd_kd_settings s = test_settings();
    s.num_temperatures = 1;
    s.temperature_grid[0] = s.temperature = 2.0f;
    s.num_weights = 1;
    s.weight_grid[0] = s.weight = 0.75f;
    teacher_set set = {0};
    add_teacher(&set, teacher, 1, even_histogram);
    add_teacher(&set, pretrained, 2, (const uint32_t[CLASSES]){100, 0, 100});
    const char *pairs[][2] = {{"tuned-ensemble", "ensemble"},
                              {"tuned-data-partitioning", "data-partitioning"},
                              {"tuned-class-coverage", "class-coverage"},
                              {"tuned-vanilla", "vanilla"}};
    fedkd_model *tuned = copy_model(pretrained), *base = copy_model(pretrained);
    for (int i = 0; i < 4; i++) {
        fedkd_kd_outcome t_out, b_out;
        memcpy(tuned->params, pretrained->params, tuned->num_params * sizeof(float));
        memcpy(base->params, pretrained->params, base->num_params * sizeof(float));
        teacher_set one = set;
        if (i != 0) one.count = 1; /* the pairing's single teacher */
        fedkd_status status = distil_with_validation(pairs[i][0], &s, tuned, &one, NULL, &t_out);
        if (!status) status = distil_with_validation(pairs[i][1], &s, base, &one, NULL, &b_out);
        CHECK(status == FEDKD_OK, "%s: %s", pairs[i][0], fedkd_error_message());
        CHECK(identical(tuned, base), "%s with one grid point differs from %s by %g", pairs[i][0],
              pairs[i][1], max_difference(tuned, base));
        CHECK(t_out.temperature == 2.0f && t_out.weight == 0.75f &&
                  t_out.validation_accuracy >= 0.0 && t_out.validation_accuracy <= 1.0,
              "%s: choice %g %g, validation %g", pairs[i][0], (double)t_out.temperature,
              (double)t_out.weight, t_out.validation_accuracy);
        CHECK(same_share(t_out.teacher_share, b_out.teacher_share),
              "%s: teacher share %g, its base's %g", pairs[i][0], t_out.teacher_share,
              b_out.teacher_share);
    }
    /* A separate validation set: every grid point trains on the whole
     * transfer set, so the final run repeats the chosen point's run, and
     * the reported accuracy is the final student's on that set. */
    fedkd_kd_outcome out, ref;
    teacher_set one = set;
    one.count = 1;
    memcpy(tuned->params, pretrained->params, tuned->num_params * sizeof(float));
    memcpy(base->params, pretrained->params, base->num_params * sizeof(float));
    fedkd_status status = distil_with_validation("tuned-data-partitioning", &s, tuned, &one,
                                                 test_data, &out);
    if (!status) status = distil_with_validation("data-partitioning", &s, base, &one, NULL, &ref);
    CHECK(status == FEDKD_OK && identical(tuned, base) && out.steps == 2 * ref.steps,
          "tuned with a validation set: differs by %g, steps %ld against 2 x %ld: %s",
          max_difference(tuned, base), out.steps, ref.steps, fedkd_error_message());
    double accuracy = 0.0, loss = 0.0;
    fedkd_evaluate(tuned, test_data, &accuracy, &loss);
    CHECK(out.validation_accuracy == accuracy, "validation accuracy %g, the student's %g",
          out.validation_accuracy, accuracy);
    /* An unlabelled validation set is refused, naming the key. */
    fedkd_dataset *unlabelled = NULL;
    uint32_t rows[4] = {0, 1, 2, 3};
    if (fedkd_dataset_subset(&unlabelled, test_data, rows, 4)) exit(1);
    unlabelled->labels[2] = -1;
    status = distil_with_validation("tuned", &s, tuned, &one, unlabelled, &out);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("config key `kd.validation`") &&
              message_has("must be labelled"),
          "unlabelled validation: %s", fedkd_error_message());
    fedkd_dataset_destroy(&unlabelled);
    set.count = 2;
    free_teachers(&set);
    fedkd_model_destroy(&tuned);
    fedkd_model_destroy(&base);
}

static void check_sets(void)
{
    fedkd_kd_settings s = fedkd_kd_default_settings();
    size_t v = 0, t = 0;
    fedkd_status status = fedkd_kd_public_sizes(&s, 1000, &v, &t);
    CHECK(status == FEDKD_OK && v == 0 && t == 0, "local/local sizes %zu %zu", v, t);
    s.validation = FEDKD_KD_PUBLIC;
    s.transfer = FEDKD_KD_PUBLIC;
    status = fedkd_kd_public_sizes(&s, 1000, &v, &t);
    CHECK(status == FEDKD_OK && v == 100 && t == 900, "public/public sizes %zu %zu", v, t);
    s.validation_size = 1000;
    status = fedkd_kd_public_sizes(&s, 1000, &v, &t);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("config key `kd.validation_size`") &&
              message_has("transfer set"),
          "no public transfer rows left: %s", fedkd_error_message());
    s.transfer = FEDKD_KD_LOCAL;
    status = fedkd_kd_public_sizes(&s, 1000, &v, &t);
    CHECK(status == FEDKD_OK && v == 1000 && t == 0, "all public rows validate: %zu %zu", v, t);
    s.validation_size = 1001;
    status = fedkd_kd_public_sizes(&s, 1000, &v, &t);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("config key `kd.validation_size`"),
          "too many validation rows: %s", fedkd_error_message());
    status = fedkd_kd_public_sizes(&s, 0, &v, &t);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("config key `kd.validation`") &&
              message_has("empty"),
          "empty public set: %s", fedkd_error_message());

    /* Seeded splits: two ascending parts, disjoint, complete, repeatable. */
    uint32_t *a = NULL, *b = NULL;
    status = fedkd_kd_split_rows(7, 3, FEDKD_KD_VALIDATION_STREAM, 50, 10, "k", &a);
    if (!status) status = fedkd_kd_split_rows(7, 3, FEDKD_KD_VALIDATION_STREAM, 50, 10, "k", &b);
    CHECK(status == FEDKD_OK && memcmp(a, b, 50 * sizeof *a) == 0, "split not repeatable");
    int seen[50] = {0}, sorted = 1;
    for (int i = 0; a && i < 50; i++) {
        if (a[i] < 50) seen[a[i]]++;
        if (i != 0 && i != 10 && a[i] <= a[i - 1]) sorted = 0;
    }
    int complete = 1;
    for (int i = 0; i < 50; i++) complete &= seen[i] == 1;
    CHECK(sorted && complete, "split parts not ascending or not a permutation");
    free(a);
    free(b);
    status = fedkd_kd_split_rows(7, 3, 1, 5, 5, "kd.validation_size", &a);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("config key `kd.validation_size`") && !a,
          "a split leaving nothing: %s", fedkd_error_message());

    /* Labels and overlaps. */
    status = fedkd_kd_check_labelled(train_data, CLASSES, "kd.transfer", "the set");
    CHECK(status == FEDKD_OK, "labelled set refused: %s", fedkd_error_message());
    fedkd_dataset *part = NULL, *other = NULL;
    uint32_t first[3] = {0, 1, 2}, later[3] = {5, 6, 2};
    if (fedkd_dataset_subset(&part, train_data, first, 3) ||
        fedkd_dataset_subset(&other, train_data, later, 3))
        exit(1);
    part->labels[1] = CLASSES;
    status = fedkd_kd_check_labelled(part, CLASSES, "kd.transfer", "the public transfer set");
    CHECK(status == FEDKD_ERR_CONFIG && message_has("config key `kd.transfer`: the public "
                                                    "transfer set") &&
              message_has("sample 1 has no label"),
          "unlabelled sample: %s", fedkd_error_message());
    status = fedkd_kd_check_disjoint(part, other, "kd.validation", "the validation set",
                                     "the transfer set");
    CHECK(status == FEDKD_ERR_CONFIG &&
              message_has("config key `kd.validation`: sample 2 of the validation set is sample "
                          "2 of the transfer set"),
          "overlap: %s", fedkd_error_message());
    other->features[2 * FEATURES] += 1.0f;
    status = fedkd_kd_check_disjoint(part, other, "kd.validation", "a", "b");
    CHECK(status == FEDKD_OK, "disjoint sets refused: %s", fedkd_error_message());
    fedkd_dataset_destroy(&part);
    fedkd_dataset_destroy(&other);

    /* Which methods read the transfer set's labels. */
    const fedkd_kd_method *m = NULL;
    fedkd_kd_settings ls = fedkd_kd_default_settings();
    ls.weight = 1.0f;
    fedkd_kd_method_find("vanilla", &m);
    CHECK(!fedkd_kd_method_needs_labels(m, &ls), "vanilla at a = 1 reads labels");
    fedkd_kd_method_find("data-partitioning", &m);
    CHECK(fedkd_kd_method_needs_labels(m, &ls), "supervised data-partitioning reads no labels");
    ls.confidence = FEDKD_KD_CONFIDENCE_UNSUPERVISED;
    CHECK(!fedkd_kd_method_needs_labels(m, &ls), "unsupervised at a = 1 reads labels");
    fedkd_kd_method_find("tuned-data-partitioning", &m);
    CHECK(fedkd_kd_method_needs_labels(m, &ls), "a grid with a < 1 reads no labels");
    ls.num_weights = 1;
    ls.weight_grid[0] = 1.0f;
    CHECK(!fedkd_kd_method_needs_labels(m, &ls), "a grid at a = 1 reads labels");
    fedkd_kd_method_find("dml", &m);
    CHECK(fedkd_kd_method_needs_labels(m, &ls), "DML reads no labels");

    /* Old names: their own rows (outputs keep them), the same methods. */
    const fedkd_kd_method *list[FEDKD_KD_MAX_METHODS];
    int count = 0;
    status = fedkd_kd_methods_parse("partition-aware,tuned-ensemble", list, FEDKD_KD_MAX_METHODS,
                                    &count);
    CHECK(status == FEDKD_OK && count == 2 && strcmp(list[0]->name, "partition-aware") == 0 &&
              strcmp(fedkd_kd_method_canonical(list[0])->name, "class-coverage") == 0 &&
              list[1]->tunes && strcmp(list[1]->tunes->name, "ensemble") == 0 &&
              list[1]->teachers == FEDKD_KD_TEACHERS_ALL_OTHERS,
          "old names: %s", fedkd_error_message());
    status = fedkd_kd_methods_parse("class-coverage,partition-aware", list, FEDKD_KD_MAX_METHODS,
                                    &count);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("listed twice"), "alias twice: %s",
          fedkd_error_message());
    status = fedkd_kd_methods_parse("tuned,tuned-vanilla", list, FEDKD_KD_MAX_METHODS, &count);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("listed twice"), "tuned twice: %s",
          fedkd_error_message());
    status = fedkd_kd_methods_parse("tuned-dml", list, FEDKD_KD_MAX_METHODS, &count);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("unknown method `tuned-dml`"),
          "tuned-dml: %s", fedkd_error_message());
}

static void check_bad_input(fedkd_model *pretrained)
{
    const fedkd_kd_method *method = NULL;
    fedkd_status status = fedkd_kd_method_find("fancy", &method);
    CHECK(status == FEDKD_ERR_CONFIG &&
              message_has("config key `kd.methods`: unknown method `fancy`; expected vanilla, "
                          "ensemble, dml, data-partitioning, class-coverage, tuned, "
                          "tuned-ensemble, tuned-data-partitioning or tuned-class-coverage"),
          "unknown method: %s", fedkd_error_message());
    const fedkd_kd_method *list[FEDKD_KD_MAX_METHODS];
    int count = 0;
    status = fedkd_kd_methods_parse(" vanilla , dml,tuned", list, FEDKD_KD_MAX_METHODS, &count);
    CHECK(status == FEDKD_OK && count == 3 && strcmp(list[1]->name, "dml") == 0,
          "methods list: %s", fedkd_error_message());
    status = fedkd_kd_methods_parse("vanilla,,dml", list, FEDKD_KD_MAX_METHODS, &count);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("`kd.methods`"), "empty name: %s",
          fedkd_error_message());
    status = fedkd_kd_methods_parse("dml,dml", list, FEDKD_KD_MAX_METHODS, &count);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("listed twice"), "repeat: %s",
          fedkd_error_message());

    float values[FEDKD_KD_MAX_GRID];
    status = fedkd_kd_parse_numbers("1, 2,4", "kd.temperature_grid", values, FEDKD_KD_MAX_GRID,
                                    &count, 0.0, 1, HUGE_VAL);
    CHECK(status == FEDKD_OK && count == 3 && values[2] == 4.0f, "grid parse: %s",
          fedkd_error_message());
    const char *bad_t[] = {"1,0", "-2", "1,,2", "hot", "2,"};
    for (int i = 0; i < 5; i++) {
        status = fedkd_kd_parse_numbers(bad_t[i], "kd.temperature_grid", values,
                                        FEDKD_KD_MAX_GRID, &count, 0.0, 1, HUGE_VAL);
        CHECK(status == FEDKD_ERR_CONFIG &&
                  message_has("config key `kd.temperature_grid`: expected numbers > 0 "
                              "separated by commas"),
              "T grid \"%s\": %s", bad_t[i], fedkd_error_message());
    }
    const char *bad_a[] = {"0.5,1.5", "-0.1"};
    for (int i = 0; i < 2; i++) {
        status = fedkd_kd_parse_numbers(bad_a[i], "kd.weight_grid", values, FEDKD_KD_MAX_GRID,
                                        &count, 0.0, 0, 1.0);
        CHECK(status == FEDKD_ERR_CONFIG &&
                  message_has("config key `kd.weight_grid`: expected numbers in [0, 1]"),
              "a grid \"%s\": %s", bad_a[i], fedkd_error_message());
    }

    /* A teacher with other classes. */
    fedkd_model_spec other_spec = spec;
    other_spec.num_classes = CLASSES + 1;
    other_spec.layers[other_spec.num_layers - 1].units = CLASSES + 1;
    float logits[1] = {0.0f};
    fedkd_kd_teacher teacher = {.client = 2, .spec = &other_spec, .params = pretrained->params,
                                .logits = logits, .histogram = even_histogram};
    fedkd_kd_job job = {.student_client = STUDENT, .student = pretrained, .transfer = train_data,
                        .student_histogram = even_histogram, .num_teachers = 1,
                        .teachers = &teacher};
    fedkd_kd_settings s = test_settings();
    fedkd_kd_outcome outcome = {0};
    fedkd_kd_method_find("vanilla", &method);
    status = method->distil(&s, &job, &outcome);
    CHECK(status == FEDKD_ERR_INVALID && message_has("teacher client 2 has 4 classes, student "
                                                     "client 5 has 3"),
          "class mismatch: %s", fedkd_error_message());
}

int main(void)
{
    setup();
    fedkd_model *pretrained = make_model(1, 2), *teacher = make_model(2, 4);
    check_weight_zero_is_plain_training(pretrained, teacher);
    check_identical_teacher_keeps_student(pretrained, teacher);
    check_mutual_learning(pretrained, teacher);
    check_ensemble_of_identical_teachers(pretrained, teacher);
    check_partition_aware(pretrained, teacher);
    check_tuned(pretrained, teacher);
    check_routing();
    check_data_partitioning(pretrained, teacher);
    check_tuned_methods(pretrained, teacher);
    check_sets();
    check_bad_input(pretrained);
    fedkd_model_destroy(&pretrained);
    fedkd_model_destroy(&teacher);
    fedkd_dataset_destroy(&train_data);
    fedkd_dataset_destroy(&test_data);
    return test_finish("test_kd_methods");
}
