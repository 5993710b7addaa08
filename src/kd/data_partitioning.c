/* Data-partitioning KD (../shared/METHODS.md, after Roth et al., ICLR 2024,
 * "KL-Dist + DP"). A frozen copy of the student as it was before KD is
 * kept; each transfer sample is routed to the most confident of the frozen
 * copy and the teachers, and the adapting student minimises
 *   (1 - a) CE(y, softmax(z_s)) + a T^2 KL(softmax_T(z_routed) || softmax_T(z_s)).
 * Routing compares plain-softmax (T = 1) confidences, whatever T the KL
 * uses, so it is fixed for the whole run and computed once; the frozen
 * copy is never trained, so its logits are computed once too. The KD run is
 * then the frozen-teacher run with one "teacher" whose logits are, row by
 * row, the routed model's: at a = 1 with every sample routed to one teacher
 * it is vanilla KD from that teacher, bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/kd/kd.h"
#include "kd/kd_private.h"

/* The confidence of one row of logits under the plain softmax (T = 1), in
 * double: exp(z_k - max) / sum_c exp(z_c - max) for the true label k, or
 * for the top class, whose numerator is 1. The same logits always give the
 * same value, so a teacher identical to the frozen student ties. */
static double confidence(const float *logits, int classes, int32_t label, fedkd_kd_confidence rule)
{
    double top = (double)logits[0];
    for (int c = 1; c < classes; c++)
        if ((double)logits[c] > top) top = (double)logits[c];
    double sum = 0.0;
    for (int c = 0; c < classes; c++) sum += exp((double)logits[c] - top);
    double numerator = rule == FEDKD_KD_CONFIDENCE_SUPERVISED ? exp((double)logits[label] - top)
                                                              : 1.0;
    return numerator / sum;
}

size_t fedkd_kd_route(const float *frozen_logits, const fedkd_kd_teacher *teachers,
                      int num_teachers, const int32_t *labels, size_t count, int classes,
                      fedkd_kd_confidence rule, int *route)
{
    size_t to_teachers = 0;
    for (size_t i = 0; i < count; i++) {
        size_t row = i * (size_t)classes;
        int32_t label = labels ? labels[i] : 0;
        double best = confidence(frozen_logits + row, classes, label, rule);
        int chosen = 0;
        for (int t = 0; t < num_teachers; t++) {
            double c = confidence(teachers[t].logits + row, classes, label, rule);
            /* Strictly more confident: a tie keeps the earlier candidate. */
            if (c > best) {
                best = c;
                chosen = 1 + t;
            }
        }
        route[i] = chosen;
        to_teachers += chosen != 0;
    }
    return to_teachers;
}

fedkd_status kd_distil_data_partitioning(const fedkd_kd_settings *s, const fedkd_kd_job *job,
                                         fedkd_kd_outcome *outcome)
{
    fedkd_status status = kd_check_teachers(job);
    if (status) return status;
    fedkd_model *student = job->student;
    const fedkd_dataset *transfer = job->transfer;
    int classes = fedkd_model_num_classes(student);
    if (s->confidence == FEDKD_KD_CONFIDENCE_SUPERVISED) {
        status = fedkd_kd_check_labelled(transfer, classes, "kd.confidence",
                                         "the transfer set (the supervised rule reads labels)");
        if (status) return status;
    }
    size_t n = transfer->count;
    float *frozen = NULL, *routed = NULL;
    int *route = malloc((n ? n : 1) * sizeof *route);
    if (!route) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the routing of %zu samples", n);
    /* The frozen copy: the student as it enters KD. */
    status = fedkd_kd_compute_logits(&student->spec, student->params, transfer, s->logit_batch,
                                     &frozen);
    if (status) goto done;
    size_t to_teachers = fedkd_kd_route(frozen, job->teachers, job->num_teachers,
                                        transfer->labels, n, classes, s->confidence, route);
    routed = fedkd_alloc((n ? n : 1) * (size_t)classes * sizeof *routed);
    if (!routed) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the routed targets");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const float *source = route[i] == 0 ? frozen : job->teachers[route[i] - 1].logits;
        memcpy(routed + i * (size_t)classes, source + i * (size_t)classes,
               (size_t)classes * sizeof *routed);
    }
    fedkd_kd_teacher target = job->teachers[0];
    target.logits = routed;
    fedkd_kd_job routed_job = *job;
    routed_job.num_teachers = 1;
    routed_job.teachers = &target;
    outcome->temperature = s->temperature;
    outcome->weight = s->weight;
    outcome->teacher_share = n ? (double)to_teachers / (double)n : 0.0;
    status = kd_run_frozen(s, &routed_job, s->temperature, s->weight, NULL, &outcome->steps);
done:
    fedkd_free(frozen);
    fedkd_free(routed);
    free(route);
    return status;
}
