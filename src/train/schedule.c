/* Learning-rate schedules across rounds (include/fedkd/train/train.h). */
#include <math.h>
#include <string.h>

#include "fedkd/train/train.h"

double fedkd_lr_at(const fedkd_lr_schedule_config *schedule, double base, int round, int rounds)
{
    int warmup = schedule->warmup_rounds;
    if (warmup > 0 && round <= warmup) return base * (double)round / (double)warmup;
    int since = round - warmup - 1;
    if (since < 0) since = 0;
    if (strcmp(schedule->kind, "step") == 0)
        return base * pow(schedule->decay, (double)(since / schedule->step_rounds));
    if (strcmp(schedule->kind, "cosine") == 0) {
        int span = rounds - warmup > 1 ? rounds - warmup : 1;
        double pi = acos(-1.0);
        return schedule->min +
               (base - schedule->min) * (1.0 + cos(pi * (double)since / (double)span)) / 2.0;
    }
    return base;
}

int fedkd_lr_schedule_uses_rounds(const fedkd_lr_schedule_config *schedule)
{
    return strcmp(schedule->kind, "cosine") == 0;
}
