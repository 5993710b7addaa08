/* Tuned KD of any method with a temperature and a weight: the grid
 * kd.temperature_grid x kd.weight_grid, scored on a validation set that is
 * never the test set (a job carries none). See fedkd_kd_distil_tuned in
 * include/fedkd/kd/kd.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/kd/kd.h"
#include "kd/kd_private.h"

/* The training part of a job whose validation set is split off its
 * transfer set: the part's rows and its teachers' logits on them. */
typedef struct training_part {
    fedkd_dataset *transfer;
    fedkd_dataset *validation;
    fedkd_kd_teacher *teachers;  /* (num_teachers) */
    float **logits;              /* (num_teachers) each (rows, classes) */
    int num_teachers;
} training_part;

static void free_part(training_part *part)
{
    fedkd_dataset_destroy(&part->transfer);
    fedkd_dataset_destroy(&part->validation);
    for (int t = 0; part->logits && t < part->num_teachers; t++) fedkd_free(part->logits[t]);
    free(part->logits);
    free(part->teachers);
    memset(part, 0, sizeof *part);
}

/* Holds validation_fraction of the transfer set out, by the student's
 * validation stream; the grid points train on the rest. */
static fedkd_status split_transfer(const fedkd_kd_settings *s, const fedkd_kd_job *job,
                                   training_part *part)
{
    const fedkd_dataset *transfer = job->transfer;
    size_t n = transfer->count;
    size_t n_validation = (size_t)llround(s->validation_fraction * (double)n);
    if (n_validation < 1) n_validation = 1;
    if (n_validation >= n)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `kd.validation_fraction`: client %d has %zu samples, too "
                          "few to hold out %g of them for tuned KD",
                          job->student_client, n, s->validation_fraction);
    uint32_t *order = NULL;
    fedkd_status status = fedkd_kd_split_rows(s->seed, (uint64_t)job->student_client,
                                              FEDKD_KD_VALIDATION_STREAM, n, n_validation,
                                              "kd.validation_fraction", &order);
    if (status) return status;
    const uint32_t *train_rows = order + n_validation;
    size_t n_train = n - n_validation;
    size_t classes = (size_t)fedkd_model_num_classes(job->student);
    part->num_teachers = job->num_teachers;
    part->teachers = calloc((size_t)job->num_teachers, sizeof *part->teachers);
    part->logits = calloc((size_t)job->num_teachers, sizeof *part->logits);
    if (!part->teachers || !part->logits) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for tuned KD of client %d",
                            job->student_client);
        goto done;
    }
    status = fedkd_dataset_subset(&part->validation, transfer, order, n_validation);
    if (!status) status = fedkd_dataset_subset(&part->transfer, transfer, train_rows, n_train);
    for (int t = 0; t < job->num_teachers && !status; t++) {
        part->logits[t] = fedkd_alloc(n_train * classes * sizeof(float));
        if (!part->logits[t]) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for tuned KD's teacher logits");
            break;
        }
        for (size_t i = 0; i < n_train; i++)
            memcpy(part->logits[t] + i * classes, job->teachers[t].logits + train_rows[i] * classes,
                   classes * sizeof(float));
        part->teachers[t] = job->teachers[t];
        part->teachers[t].logits = part->logits[t];
    }
done:
    free(order);
    return status;
}

fedkd_status fedkd_kd_distil_tuned(const fedkd_kd_method *base, const fedkd_kd_settings *s,
                                   const fedkd_kd_job *job, fedkd_kd_outcome *outcome)
{
    fedkd_status status = kd_check_teachers(job);
    if (status) return status;
    fedkd_model *student = job->student;
    training_part part = {0};
    fedkd_kd_job grid_job = *job;
    const fedkd_dataset *validation = job->validation;
    float *start = fedkd_alloc(student->num_params * sizeof(float));
    double *scores = NULL; /* validation accuracy per grid point, -1: diverged */
    if (!start) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for tuned KD of client %d",
                            job->student_client);
        goto done;
    }
    if (!validation) {
        status = split_transfer(s, job, &part);
        if (status) goto done;
        grid_job.transfer = part.transfer;
        grid_job.teachers = part.teachers;
        validation = part.validation;
    }
    grid_job.validation = NULL;
    status = fedkd_kd_check_labelled(validation, fedkd_model_num_classes(student),
                                     "kd.validation", "the validation set");
    if (status) goto done;
    memcpy(start, student->params, student->num_params * sizeof(float));

    int points = s->num_temperatures * s->num_weights;
    scores = malloc((size_t)(points > 0 ? points : 1) * sizeof *scores);
    if (!scores) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the tuning grid");
        goto done;
    }
    /* Grid points are row-major: T outer. */
    for (int p = 0; p < points; p++) {
        fedkd_kd_settings point = *s;
        point.temperature = s->temperature_grid[p / s->num_weights];
        point.weight = s->weight_grid[p % s->num_weights];
        memcpy(student->params, start, student->num_params * sizeof(float));
        fedkd_kd_outcome trial = {.temperature = NAN, .weight = NAN, .validation_accuracy = NAN,
                                  .num_peers = 1, .teacher_share = NAN};
        status = base->distil(&point, &grid_job, &trial);
        outcome->steps += trial.steps;
        double loss = 0.0;
        if (!status) status = fedkd_evaluate(student, validation, &scores[p], &loss);
        if (status == FEDKD_ERR_NUMERIC) {
            /* A point where training diverges is a bad choice, not a failed
             * study; the count is reported. */
            fedkd_error_clear();
            scores[p] = -1.0;
            outcome->diverged++;
            status = FEDKD_OK;
        }
        if (status) goto done;
    }
    /* The best point (ties: smaller T, then smaller a) is distilled on the
     * whole transfer set; should that diverge, the next best. */
    for (;;) {
        int best = -1;
        for (int p = 0; p < points; p++) {
            if (scores[p] < 0.0) continue;
            float t = s->temperature_grid[p / s->num_weights];
            float a = s->weight_grid[p % s->num_weights];
            if (best < 0 || scores[p] > scores[best] ||
                (scores[p] == scores[best] &&
                 (t < s->temperature_grid[best / s->num_weights] ||
                  (t == s->temperature_grid[best / s->num_weights] &&
                   a < s->weight_grid[best % s->num_weights]))))
                best = p;
        }
        if (best < 0) {
            status = FEDKD_FAIL(FEDKD_ERR_NUMERIC,
                                "tuned KD of client %d: training diverged at every point of the "
                                "grid; lower local.lr", job->student_client);
            goto done;
        }
        fedkd_kd_settings chosen = *s;
        chosen.temperature = s->temperature_grid[best / s->num_weights];
        chosen.weight = s->weight_grid[best % s->num_weights];
        memcpy(student->params, start, student->num_params * sizeof(float));
        fedkd_kd_outcome final = {.temperature = NAN, .weight = NAN, .validation_accuracy = NAN,
                                  .num_peers = 1, .teacher_share = NAN};
        status = base->distil(&chosen, job, &final);
        outcome->steps += final.steps;
        outcome->temperature = chosen.temperature;
        outcome->weight = chosen.weight;
        outcome->validation_accuracy = scores[best];
        outcome->num_peers = final.num_peers;
        outcome->teacher_share = final.teacher_share;
        if (status != FEDKD_ERR_NUMERIC) break;
        fedkd_error_clear();
        scores[best] = -1.0;
        outcome->diverged++;
    }
done:
    free_part(&part);
    fedkd_free(start);
    free(scores);
    return status;
}
