/* FedNova (Wang et al., NeurIPS 2020, arXiv 2007.07481): normalised
 * averaging, so that clients doing more local steps (more data, the same
 * local.epochs) do not pull the global model towards their own optimum.
 *
 * Client i trains from x as in FedAvg, taking tau_i SGD steps; a_i is
 * fl_sgd_effective_steps(tau_i, local.momentum) (tau_i without momentum).
 * With p_i the sample weights of the round's participants:
 *
 *   d_i      = (y_i - x) / a_i              the normalised update
 *   tau_eff  = sum_i p_i a_i
 *   server     x += server.lr * tau_eff * sum_i p_i d_i
 *
 * With equal a_i this is FedAvg's step (to the fixed-point resolution).
 *
 *   payload   down (per participant)      up (per participant)
 *   FedNova   x: P                        y_i - x and a_i: P + 1
 *
 * No state is kept between rounds. */
#include <math.h>

#include "fedkd/core/core.h"
#include "fl/compress.h"
#include "fl/fl_round.h"

static fedkd_status fednova_check_config(const fedkd_config *config)
{
    return fl_require_sgd(config, "fednova");
}

static fl_payload fednova_payload(const fl_run *run, int round)
{
    (void)round;
    size_t n = run->num_params;
    fl_payload p = {.down = n, .up = n + 1, .sent_up = n + 1, .up_weights = n,
                    .up_weight_segments = 1};
    return fl_fedbn_payload(run, p, 1, 1);
}

static size_t no_state(const fl_run *run)
{
    (void)run;
    return 0;
}

static fedkd_status fednova_client(const fl_run *run, fl_client_round *c)
{
    size_t n = run->num_params;
    fedkd_status status = fl_train_private(run, c, NULL, c->down);
    if (status) return status;
    double a = fl_sgd_effective_steps(c->steps, run->config->local.momentum);
    /* A client that took no step moved nothing and adds nothing. */
    if (!(a > 0.0)) return FEDKD_OK;
    status = fl_upload(run, c, 0, c->model->params, c->down, n, c->weight / a, FL_SEGMENT_WEIGHTS,
                       0);
    double share = c->weight * a;
    if (!status && !(fabs(share) <= FEDKD_FIXED_LIMIT))
        status = FEDKD_FAIL(FEDKD_ERR_NUMERIC, "fednova: client %d's %g effective steps cannot "
                            "be summed", c->client, a);
    if (!status) c->sum[n] += (int64_t)llround(share * FEDKD_FIXED_SCALE);
    return status;
}

static fedkd_status fednova_server(const fl_run *run, fl_server_round *s)
{
    size_t n = run->num_params;
    double step = run->config->server.lr * fedkd_fixed_to_double(s->sum[n]);
    for (size_t i = 0; i < n; i++)
        s->global[i] = (float)((double)s->global[i] + step * fedkd_fixed_to_double(s->sum[i]));
    return FEDKD_OK;
}

const fl_algorithm_ops fl_fednova_ops = {
    .check_config = fednova_check_config,
    .payload = fednova_payload,
    .server_state_len = no_state,
    .client_state_len = fl_fedbn_state_len,
    .client_round = fednova_client,
    .server_update = fednova_server,
};
