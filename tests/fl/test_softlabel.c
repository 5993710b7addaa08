/* Properties of the soft-label building blocks (src/fl/softlabel.h) that
 * follow from their definitions (../shared/METHODS.md), on a synthetic task
 * and a tiny dense model:
 * - the round's public sample: the configured size, distinct ascending rows
 *   in range, the same for the same round, another for another round, the
 *   whole set when public.per_round is 0;
 * - FedMD with one client: the consensus (its upload through the fixed-point
 *   sum, weight 1) equals its logits to 2^-40; the same holds for K
 *   identical clients with weights 1/K;
 * - DS-FL: the entropy-reduction aggregation (T = 0.1) of averaged,
 *   disagreeing predictions has lower mean entropy than the average, lower
 *   still at T = 0.05, and keeps every row's top class;
 * - FD: per-class mean logits equal the mean of the logits of exactly the
 *   samples of that class, computed one sample at a time (1e-5); counts are
 *   the label histogram; a class without samples gives zeros; the FD teacher
 *   hook gives softmax_T of the row's class and KD weight 0 for classes
 *   nobody had;
 * - DML: the mean of the other peers recovers (b + c) / 2 from the mean of
 *   a, b, c and a;
 * - fitting soft targets lowers the loss to them; FedDF's distillation
 *   never ends with a validation loss above the averaged model's and stops
 *   within its epoch budget. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/fl/fl.h"
#include "fedkd/nn/model_json.h"
#include "fl/softlabel.h"
#include "../test_util.h"

enum { FEATURES = 6, CLASSES = 4 };

static fedkd_dataset *data;
static fedkd_model_spec spec;

static void setup(void)
{
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    s.count = 300;
    s.shape = (fedkd_shape){FEATURES, 1, 1};
    s.num_classes = CLASSES;
    s.separation = 1.0f;
    s.seed = 5;
    fedkd_status status = fedkd_synthetic_generate(&data, &s);
    cJSON *layers = cJSON_Parse("[{\"type\":\"dense\",\"units\":12},{\"type\":\"relu\"},"
                                "{\"type\":\"dense\",\"units\":4}]");
    if (!status) status = fedkd_model_spec_from_json(&spec, layers, s.shape, CLASSES, "test");
    cJSON_Delete(layers);
    if (status) {
        fprintf(stderr, "setup: %s\n", fedkd_error_message());
        exit(1);
    }
}

static fedkd_model *new_model(uint64_t id, int max_batch)
{
    fedkd_model *model = NULL;
    if (fedkd_model_create(&model, &spec, max_batch)) {
        fprintf(stderr, "model: %s\n", fedkd_error_message());
        exit(1);
    }
    fedkd_model_init_params(model, 9, id);
    return model;
}

static void test_public_sample(void)
{
    enum { COUNT = 200 };
    uint32_t a[COUNT], b[COUNT], c[COUNT];
    size_t n = fl_public_sample(1, 3, COUNT, 50, a);
    CHECK(n == 50, "sample size %zu", n);
    int ascending = 1, in_range = 1;
    for (size_t i = 0; i < n; i++) {
        if (a[i] >= COUNT) in_range = 0;
        if (i && a[i] <= a[i - 1]) ascending = 0;
    }
    CHECK(ascending && in_range, "rows ascending, distinct and below %d", COUNT);
    fl_public_sample(1, 3, COUNT, 50, b);
    CHECK(memcmp(a, b, n * sizeof *a) == 0, "the same round gives the same sample");
    fl_public_sample(1, 4, COUNT, 50, c);
    CHECK(memcmp(a, c, n * sizeof *a) != 0, "another round gives another sample");
    CHECK(fl_public_sample(1, 3, COUNT, 0, c) == COUNT && c[0] == 0 && c[COUNT - 1] == COUNT - 1,
          "per_round 0: the whole set in order");
    CHECK(fl_public_sample_size(COUNT, 500) == COUNT, "per_round above the size: the whole set");
}

/* The consensus of k identical uploads of `logits` through the fixed-point
 * sum with weights 1/k, as the server decodes it. */
static void consensus_of(const float *logits, size_t n, int k, float *out)
{
    int64_t *sum = calloc(n, sizeof *sum);
    for (int i = 0; i < k; i++)
        CHECK(fedkd_fixed_accumulate(sum, logits, n, 1.0 / k) == FEDKD_OK, "accumulate");
    fl_fixed_decode(sum, n, out);
    free(sum);
}

static void test_fedmd_one_client(void)
{
    fedkd_model *model = new_model(1, 64);
    uint32_t rows[120];
    size_t n = fl_public_sample(2, 1, data->count, 120, rows);
    size_t floats = n * CLASSES;
    float *logits = malloc(floats * sizeof *logits), *consensus = malloc(floats * sizeof *consensus);
    CHECK(fl_logits_on_rows(model, data, rows, n, logits) == FEDKD_OK, "logits");
    double largest = 0.0, worst = 0.0;
    consensus_of(logits, floats, 1, consensus);
    for (size_t i = 0; i < floats; i++) {
        largest = fmax(largest, fabs((double)logits[i]));
        worst = fmax(worst, fabs((double)consensus[i] - (double)logits[i]));
    }
    CHECK(largest > 0.1, "the logits are not trivially zero (largest %g)", largest);
    CHECK(worst <= 0x1p-40, "one client: consensus equals its upload (max error %g)", worst);
    consensus_of(logits, floats, 3, consensus);
    worst = 0.0;
    for (size_t i = 0; i < floats; i++)
        worst = fmax(worst, fabs((double)consensus[i] - (double)logits[i]));
    CHECK(worst <= 1e-6, "three identical clients: consensus equals the upload (max error %g)",
          worst);
    /* The logits of a single row equal those computed in a batch. */
    float single[CLASSES];
    CHECK(fl_logits_on_rows(model, data, rows + 7, 1, single) == FEDKD_OK, "one row");
    for (int j = 0; j < CLASSES; j++)
        CHECK_CLOSE(single[j], logits[7 * CLASSES + j], 1e-5, "row 7 alone vs in a batch");
    free(logits);
    free(consensus);
    fedkd_model_destroy(&model);
}

static void test_dsfl_sharpening(void)
{
    enum { ROWS = 500, PEERS = 5, C = 10 };
    float *mean = calloc(ROWS * C, sizeof *mean), *sharp = malloc(ROWS * C * sizeof *sharp);
    float *sharper = malloc(ROWS * C * sizeof *sharper), z[C], p[C];
    fedkd_rng rng = fedkd_rng_stream(3, FEDKD_RNG_TEST, 1, 0);
    for (int r = 0; r < ROWS; r++)
        for (int k = 0; k < PEERS; k++) {
            for (int j = 0; j < C; j++) z[j] = (float)(2.0 * fedkd_rng_normal(&rng));
            fedkd_softmax(z, p, 1, C, 1.0f);
            for (int j = 0; j < C; j++) mean[r * C + j] += p[j] / PEERS;
        }
    fl_sharpen(mean, ROWS, C, 0.1f, sharp);
    fl_sharpen(mean, ROWS, C, 0.05f, sharper);
    double before = fl_mean_entropy(mean, ROWS, C), after = fl_mean_entropy(sharp, ROWS, C);
    double further = fl_mean_entropy(sharper, ROWS, C);
    CHECK(after < before - 0.1, "T = 0.1 lowers the mean entropy: %g -> %g nats", before, after);
    CHECK(further < after, "T = 0.05 lowers it further: %g -> %g nats", after, further);
    int same_top = 1, normalised = 1;
    for (int r = 0; r < ROWS; r++) {
        int top_mean = 0, top_sharp = 0;
        double sum = 0.0;
        for (int j = 0; j < C; j++) {
            if (mean[r * C + j] > mean[r * C + top_mean]) top_mean = j;
            if (sharp[r * C + j] > sharp[r * C + top_sharp]) top_sharp = j;
            sum += (double)sharp[r * C + j];
        }
        if (top_mean != top_sharp) same_top = 0;
        if (fabs(sum - 1.0) > 1e-5) normalised = 0;
    }
    CHECK(same_top, "sharpening keeps every row's top class");
    CHECK(normalised, "sharpened rows sum to 1");
    free(mean);
    free(sharp);
    free(sharper);
}

static void test_fd_class_means(void)
{
    fedkd_model *model = new_model(2, 32);
    /* Drop every sample of class 2 to see a class without samples. */
    uint32_t *keep = malloc(data->count * sizeof *keep);
    size_t kept = 0;
    for (size_t i = 0; i < data->count; i++)
        if (data->labels[i] != 2) keep[kept++] = (uint32_t)i;
    fedkd_dataset *subset = NULL;
    CHECK(fedkd_dataset_subset(&subset, data, keep, kept) == FEDKD_OK, "subset");
    float means[CLASSES * CLASSES];
    uint32_t counts[CLASSES];
    CHECK(fl_class_mean_logits(model, subset, means, counts) == FEDKD_OK, "class means");
    /* Reference: one sample at a time, summed per class. */
    double sums[CLASSES][CLASSES] = {{0}};
    uint32_t expected_counts[CLASSES] = {0};
    size_t sample = fedkd_dataset_sample_floats(subset);
    for (size_t i = 0; i < subset->count; i++) {
        const float *z = fedkd_model_forward(model, subset->features + i * sample, 1);
        int label = subset->labels[i];
        expected_counts[label]++;
        for (int j = 0; j < CLASSES; j++) sums[label][j] += (double)z[j];
    }
    for (int k = 0; k < CLASSES; k++) {
        CHECK(counts[k] == expected_counts[k], "class %d: count %u, expected %u", k, counts[k],
              expected_counts[k]);
        for (int j = 0; j < CLASSES; j++) {
            double want = expected_counts[k] ? sums[k][j] / expected_counts[k] : 0.0;
            CHECK_CLOSE(means[k * CLASSES + j], want, 1e-5, "per-class mean logit");
        }
    }
    CHECK(counts[2] == 0 && means[2 * CLASSES] == 0.0f, "class 2 has no samples: zeros");
    CHECK(counts[0] > 0 && counts[1] > 0 && counts[3] > 0, "the other classes have samples");

    /* The FD teacher: softmax_T of the row's class, weight 0 where nobody had it. */
    float class_counts[CLASSES];
    for (int k = 0; k < CLASSES; k++) class_counts[k] = (float)counts[k];
    fl_class_teacher context = {.class_logits = means, .class_counts = class_counts,
                                .labels = data->labels, .classes = CLASSES};
    fedkd_teacher teacher = fl_class_teacher_hook(&context);
    uint32_t rows[16];
    for (int i = 0; i < 16; i++) rows[i] = (uint32_t)i;
    float probs[16 * CLASSES], weight[16], want[CLASSES];
    for (int i = 0; i < 16; i++) weight[i] = 0.5f;
    CHECK(teacher.soft_targets(teacher.context, rows, 16, NULL, 2.0f, probs, weight) == FEDKD_OK,
          "teacher");
    int saw_missing = 0;
    for (int i = 0; i < 16; i++) {
        int label = data->labels[i];
        fedkd_softmax(means + label * CLASSES, want, 1, CLASSES, 2.0f);
        for (int j = 0; j < CLASSES; j++)
            CHECK(probs[i * CLASSES + j] == want[j], "row %d: target of its class", i);
        CHECK(weight[i] == (label == 2 ? 0.0f : 0.5f), "row %d (class %d): weight %g", i, label,
              (double)weight[i]);
        saw_missing |= label == 2;
    }
    CHECK(saw_missing, "the first rows include class 2 (the check can fail)");
    fedkd_dataset_destroy(&subset);
    free(keep);
    fedkd_model_destroy(&model);
}

static void test_dml_others(void)
{
    enum { ROWS = 3 };
    float a[ROWS * CLASSES], b[ROWS * CLASSES], c[ROWS * CLASSES], mean[ROWS * CLASSES];
    float others[ROWS * CLASSES];
    fedkd_rng rng = fedkd_rng_stream(4, FEDKD_RNG_TEST, 2, 0);
    float z[ROWS * CLASSES];
    float *peers[3] = {a, b, c};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < ROWS * CLASSES; i++) z[i] = (float)fedkd_rng_normal(&rng);
        fedkd_softmax(z, peers[k], ROWS, CLASSES, 1.0f);
    }
    for (int i = 0; i < ROWS * CLASSES; i++) mean[i] = (a[i] + b[i] + c[i]) / 3.0f;
    fl_mean_of_others(mean, a, 3, ROWS, CLASSES, others);
    for (int i = 0; i < ROWS * CLASSES; i++)
        CHECK_CLOSE(others[i], (b[i] + c[i]) / 2.0f, 1e-6, "mean of the other peers");
}

static void test_fitting(void)
{
    fedkd_model *student = new_model(3, 64), *teacher = new_model(4, 64);
    fedkd_optimizer_settings o = fedkd_optimizer_default_settings();
    o.lr = 0.05f;
    fedkd_optimizer *optimizer = NULL;
    CHECK(fedkd_optimizer_create(&optimizer, &o, student->num_params) == FEDKD_OK, "optimizer");
    uint32_t rows[200];
    size_t n = fl_public_sample(6, 1, data->count, 200, rows);
    float *logits = malloc(n * CLASSES * sizeof *logits), *probs = malloc(n * CLASSES * sizeof *probs);
    CHECK(fl_logits_on_rows(teacher, data, rows, n, logits) == FEDKD_OK, "teacher logits");
    fedkd_softmax(logits, probs, (int)n, CLASSES, 1.0f);
    fl_distil_settings s = {.kind = FL_TARGET_LOGITS_MAE, .temperature = 1.0f, .epochs = 5,
                            .batch_size = 16, .seed = 1, .stream_a = FL_PUBLIC_SHUFFLE_A};
    for (int kind = 0; kind < 2; kind++) {
        s.kind = kind ? FL_TARGET_PROBS_KL : FL_TARGET_LOGITS_MAE;
        const float *targets = kind ? probs : logits;
        double before, after;
        CHECK(fl_distil_loss(student, data, rows, targets, NULL, n, &s, &before) == FEDKD_OK, "loss");
        fedkd_optimizer_reset(optimizer);
        CHECK(fl_distil(student, optimizer, data, rows, targets, NULL, n, &s, NULL) == FEDKD_OK,
              "distil");
        CHECK(fl_distil_loss(student, data, rows, targets, NULL, n, &s, &after) == FEDKD_OK, "loss");
        CHECK(after < 0.8 * before, "%s: fitting lowers the loss %g -> %g",
              kind ? "KL" : "MAE", before, after);
    }
    /* FedDF: the validation loss never ends above the starting model's. */
    fedkd_model *server = new_model(5, 64);
    s.kind = FL_TARGET_PROBS_KL;
    s.temperature = 2.0f;
    s.epochs = 6;
    s.stream_a = FL_SERVER_SHUFFLE_A;
    int epochs_run = -1;
    float *start = malloc(server->num_params * sizeof *start);
    memcpy(start, server->params, server->num_params * sizeof *start);
    fedkd_optimizer_reset(optimizer);
    CHECK(fl_feddf_distil(server, optimizer, data, rows, n, logits, &s, 1, 0.25, 2, &epochs_run) ==
              FEDKD_OK,
          "feddf distil");
    CHECK(epochs_run >= 1 && epochs_run <= 6, "epochs run %d", epochs_run);
    /* The validation split as fl_feddf_distil draws it: the first quarter. */
    uint32_t positions[200];
    for (size_t i = 0; i < n; i++) positions[i] = (uint32_t)i;
    fedkd_rng split = fedkd_rng_stream(1, FEDKD_RNG_PUBLIC_SPLIT, 1, FL_FEDDF_SPLIT_STREAM);
    fedkd_rng_shuffle_u32(&split, positions, n);
    size_t held_out = (size_t)floor(0.25 * (double)n);
    float *ensemble = malloc(n * CLASSES * sizeof *ensemble);
    fedkd_softmax(logits, ensemble, (int)n, CLASSES, 2.0f);
    double distilled_loss, start_loss;
    CHECK(fl_distil_loss(server, data, rows, ensemble, positions, held_out, &s, &distilled_loss) ==
              FEDKD_OK,
          "validation loss after");
    float *kept = malloc(server->num_params * sizeof *kept);
    memcpy(kept, server->params, server->num_params * sizeof *kept);
    memcpy(server->params, start, server->num_params * sizeof *start);
    CHECK(fl_distil_loss(server, data, rows, ensemble, positions, held_out, &s, &start_loss) ==
              FEDKD_OK,
          "validation loss before");
    memcpy(server->params, kept, server->num_params * sizeof *kept);
    CHECK(distilled_loss < start_loss, "FedDF: validation KL %g -> %g", start_loss, distilled_loss);
    free(kept);
    free(ensemble);
    CHECK(memcmp(start, server->params, server->num_params * sizeof *start) != 0,
          "distillation from another model's logits changed the server model");
    /* The same call again from the same start gives the same bits. */
    float *first = malloc(server->num_params * sizeof *first);
    memcpy(first, server->params, server->num_params * sizeof *first);
    memcpy(server->params, start, server->num_params * sizeof *start);
    fedkd_optimizer_reset(optimizer);
    CHECK(fl_feddf_distil(server, optimizer, data, rows, n, logits, &s, 1, 0.25, 2, NULL) ==
              FEDKD_OK,
          "feddf distil again");
    CHECK(memcmp(first, server->params, server->num_params * sizeof *first) == 0,
          "FedDF's distillation is deterministic");
    free(start);
    free(first);
    free(logits);
    free(probs);
    fedkd_model_destroy(&student);
    fedkd_model_destroy(&teacher);
    fedkd_model_destroy(&server);
    fedkd_optimizer_destroy(&optimizer);
}

int main(void)
{
    setup();
    test_public_sample();
    test_fedmd_one_client();
    test_dsfl_sharpening();
    test_fd_class_means();
    test_dml_others();
    test_fitting();
    fedkd_dataset_destroy(&data);
    return test_finish("test_softlabel");
}
