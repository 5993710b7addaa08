/* Private to src/kd: the frozen-teacher KD run every method but DML builds
 * on, shared by the method table (kd_methods.c), tuning (tuning.c) and
 * data-partitioning KD (data_partitioning.c). */
#ifndef FEDKD_KD_PRIVATE_H
#define FEDKD_KD_PRIVATE_H

#include "fedkd/kd/kd.h"

/* Distils job->student on job->transfer from the job's frozen teachers at
 * (temperature, weight): (1 - a) CE + a T^2 KL(teachers || student), the
 * teachers combined per settings->ensemble_logits. class_weight (classes)
 * or NULL: a per-class KD weight replacing `weight` (class-coverage).
 * Adds the optimizer steps to *steps. */
fedkd_status kd_run_frozen(const fedkd_kd_settings *settings, const fedkd_kd_job *job,
                           float temperature, float weight, const float *class_weight,
                           long *steps);

/* Fails unless the job has a teacher and every teacher has the student's
 * classes. */
fedkd_status kd_check_teachers(const fedkd_kd_job *job);

/* Data-partitioning KD (data_partitioning.c): routes every transfer sample
 * to the frozen pre-KD student or a teacher (fedkd_kd_route), then distils
 * from the routed model's softened predictions at (settings' T, a). */
fedkd_status kd_distil_data_partitioning(const fedkd_kd_settings *settings,
                                         const fedkd_kd_job *job, fedkd_kd_outcome *outcome);

#endif
