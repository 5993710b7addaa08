/* Learning-rate schedules across rounds, against values worked out by hand
 * (include/fedkd/train/train.h, fedkd_lr_at). */
#include <string.h>

#include "fedkd/train/train.h"
#include "../test_util.h"

static fedkd_lr_schedule_config schedule(const char *kind, int warmup, int step_rounds,
                                         double decay, double min)
{
    fedkd_lr_schedule_config s;
    memset(&s, 0, sizeof s);
    strcpy(s.kind, kind);
    s.warmup_rounds = warmup;
    s.step_rounds = step_rounds;
    s.decay = decay;
    s.min = min;
    return s;
}

static void check_rates(const fedkd_lr_schedule_config *s, int rounds, const double *want,
                        const char *what)
{
    for (int r = 1; r <= rounds; r++) {
        char label[64];
        snprintf(label, sizeof label, "%s, round %d", what, r);
        CHECK_CLOSE(fedkd_lr_at(s, 0.1, r, rounds), want[r - 1], 1e-7, label);
    }
}

int main(void)
{
    fedkd_lr_schedule_config constant = schedule("constant", 0, 10, 0.1, 0.0);
    const double flat[4] = {0.1, 0.1, 0.1, 0.1};
    check_rates(&constant, 4, flat, "constant");

    /* Halved every 3 rounds. */
    fedkd_lr_schedule_config step = schedule("step", 0, 3, 0.5, 0.0);
    const double steps[10] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125};
    check_rates(&step, 10, steps, "step");

    /* Two warm-up rounds (0.05, 0.1), then the same steps from round 3. */
    fedkd_lr_schedule_config warm_step = schedule("step", 2, 3, 0.5, 0.0);
    const double warm_steps[10] = {0.05, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025};
    check_rates(&warm_step, 10, warm_steps, "warm-up and step");

    /* Cosine over 5 rounds down towards 0: 0.05 (1 + cos(pi t / 5)). */
    fedkd_lr_schedule_config cosine = schedule("cosine", 0, 10, 0.1, 0.0);
    const double cosines[5] = {0.1, 0.0904508497, 0.0654508497, 0.0345491503, 0.0095491503};
    check_rates(&cosine, 5, cosines, "cosine");

    /* One warm-up round, then cosine over 2 rounds towards 0.01:
     * 0.1, then 0.01 + 0.09 (1 + cos(pi / 2)) / 2 = 0.055. */
    fedkd_lr_schedule_config warm_cosine = schedule("cosine", 1, 10, 0.1, 0.01);
    const double warm_cosines[3] = {0.1, 0.1, 0.055};
    check_rates(&warm_cosine, 3, warm_cosines, "warm-up and cosine");

    /* Warm-up alone ramps, then stays. */
    fedkd_lr_schedule_config warm = schedule("constant", 4, 10, 0.1, 0.0);
    const double ramp[6] = {0.025, 0.05, 0.075, 0.1, 0.1, 0.1};
    check_rates(&warm, 6, ramp, "warm-up");

    CHECK(fedkd_lr_schedule_uses_rounds(&cosine) && !fedkd_lr_schedule_uses_rounds(&step) &&
              !fedkd_lr_schedule_uses_rounds(&constant),
          "only cosine follows the number of rounds");
    return test_finish("test_lr_schedule");
}
