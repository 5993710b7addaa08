/* FedBN (Li et al., ICLR 2021, arXiv 2102.07623) as an option of the
 * algorithms that average weights (fedavg, fedprox, scaffold, fednova):
 * config key `fedbn`. The normalisation parameters (gamma, beta and the
 * running statistics of every batchnorm and groupnorm, the shortcut
 * batchnorms included) stay on each client:
 *
 *   - each client keeps them in its state row (after the algorithm's own
 *     state, e.g. SCAFFOLD's c_i), checkpointed as a row of /clients/state;
 *     the last float of the part says whether the client has trained yet.
 *     Before training, a client that has puts its own values into the
 *     model in place of the broadcast ones; one that has not starts from
 *     the broadcast ones (the initial values in round 1).
 *   - after training, the client's values go back into its row.
 *   - bytes: a deployment sends neither way the normalisation floats, so
 *     payload.sent_down and sent_up leave them out.
 *
 * Our rule for the global model's evaluation: the simulator still carries
 * the participants' normalisation parameters in the reduction, so that the
 * server's model (and its test accuracy, checkpoints and model file) has
 * their sample-weighted mean, as FedAvg would. That mean is a measurement of
 * the simulation only: no client ever starts from it after its first round,
 * and it is not counted in the bytes. */
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fl/fl_round.h"

#define MAX_RANGES FEDKD_MAX_LAYERS

/* The normalisation ranges of the federation's model; count 0 when FedBN is
 * off. */
static int norm_ranges(const fl_run *run, size_t *begin, size_t *end)
{
    if (!run->config->fedbn || run->models.num_entries < 1) return 0;
    int count = 0;
    if (fedkd_model_spec_param_ranges(&run->models.specs[0], FEDKD_PARAMS_NORM, begin, end,
                                      MAX_RANGES, &count) != FEDKD_OK)
        return 0;
    return count < MAX_RANGES ? count : MAX_RANGES;
}

size_t fl_fedbn_local_len(const fl_run *run)
{
    size_t begin[MAX_RANGES], end[MAX_RANGES], total = 0;
    int count = norm_ranges(run, begin, end);
    for (int r = 0; r < count; r++) total += end[r] - begin[r];
    return total;
}

size_t fl_fedbn_state_len(const fl_run *run)
{
    size_t local = fl_fedbn_local_len(run);
    return local ? local + 1 : 0;
}

fl_payload fl_fedbn_payload(const fl_run *run, fl_payload payload, size_t copies_down,
                            size_t copies_up)
{
    size_t local = fl_fedbn_local_len(run);
    payload.sent_down = payload.down - copies_down * local;
    payload.sent_up -= copies_up * local;
    /* Each weight segment (compress.h) is one model's worth. */
    if (payload.up_weight_segments > 0) payload.up_weights -= local;
    return payload;
}

/* The FedBN part of a client's state row, or NULL. */
static float *fedbn_state(const fl_run *run, const fl_client_round *c)
{
    size_t own = fl_fedbn_state_len(run);
    if (!own || !c->state) return NULL;
    size_t total = run->algorithm->ops->client_state_len(run);
    return c->state + (total - own);
}

void fl_fedbn_restore(const fl_run *run, const fl_client_round *c)
{
    float *state = fedbn_state(run, c);
    size_t begin[MAX_RANGES], end[MAX_RANGES];
    int count = norm_ranges(run, begin, end);
    if (!state || state[fl_fedbn_local_len(run)] == 0.0f) return;
    size_t at = 0;
    for (int r = 0; r < count; r++) {
        memcpy(c->model->params + begin[r], state + at, (end[r] - begin[r]) * sizeof(float));
        at += end[r] - begin[r];
    }
}

void fl_fedbn_save(const fl_run *run, const fl_client_round *c)
{
    float *state = fedbn_state(run, c);
    size_t begin[MAX_RANGES], end[MAX_RANGES];
    int count = norm_ranges(run, begin, end);
    if (!state) return;
    size_t at = 0;
    for (int r = 0; r < count; r++) {
        memcpy(state + at, c->model->params + begin[r], (end[r] - begin[r]) * sizeof(float));
        at += end[r] - begin[r];
    }
    state[at] = 1.0f;
}

void fl_fedbn_zero_local(const fl_run *run, float *vector)
{
    size_t begin[MAX_RANGES], end[MAX_RANGES];
    int count = norm_ranges(run, begin, end);
    for (int r = 0; r < count; r++) memset(vector + begin[r], 0, (end[r] - begin[r]) * sizeof(float));
}
