/* SCAFFOLD (Karimireddy et al., ICML 2020, arXiv 1910.06378), "option II".
 *
 * The server keeps the global weights x and a control variate c; client i
 * keeps its own variate c_i, zero at the start. A selected client trains
 * from x with every gradient corrected by c - c_i, so that its steps follow
 * the federation's mean gradient rather than its own data's:
 *
 *   y        = local training from x, gradient g(y) + c - c_i
 *   c_i+     = c_i - c + (x - y) / (K lr)
 *   upload     y - x (sample-weighted, as FedAvg) and c_i+ - c_i
 *   server     x += server.lr * sum_i p_i (y_i - x)
 *              c += (1 / N) sum_i (c_i+ - c_i)      N = clients.count
 *
 * so c stays the mean of all N clients' variates. K is the number of local
 * SGD steps; with momentum m it is fl_sgd_effective_steps (each gradient
 * moves the weights by up to 1 / (1 - m) of a step), so (x - y) / (K lr) is
 * the mean corrected gradient either way. lr is the round's local rate.
 * Our choice: x moves by the sample-weighted mean of the updates, as our
 * FedAvg does (the paper's is unweighted); with one client, or zero
 * variates, a round is FedAvg's.
 *
 *   payload   down (per participant)      up (per participant)
 *   SCAFFOLD  x and c: 2 P                y - x and c_i+ - c_i: 2 P
 *
 * c is the server state (/server/state in checkpoints) and c_i the client
 * state (row i of /clients/state), so a resumed run is exact. */
#include <string.h>

#include "fedkd/core/core.h"
#include "fl/compress.h"
#include "fl/fl_round.h"

static fedkd_status scaffold_check_config(const fedkd_config *config)
{
    return fl_require_sgd(config, "scaffold");
}

static fl_payload scaffold_payload(const fl_run *run, int round)
{
    (void)round;
    size_t n = run->num_params;
    fl_payload p = {.down = 2 * n, .up = 2 * n, .sent_up = 2 * n, .up_weights = n,
                    .up_weight_segments = 2};
    return fl_fedbn_payload(run, p, 2, 2);
}

static size_t scaffold_server_state_len(const fl_run *run)
{
    return run->num_params;
}

/* c_i, then FedBN's part (fedbn.c) when on. */
static size_t scaffold_client_state_len(const fl_run *run)
{
    return run->num_params + fl_fedbn_state_len(run);
}

void fl_scaffold_update_variate(float *client_variate, const float *server_variate,
                                const float *global, const float *trained, size_t n,
                                double effective_steps, double lr, float *change)
{
    /* A client without a step learns nothing about its gradient. */
    double scale = effective_steps > 0.0 && lr > 0.0 ? 1.0 / (effective_steps * lr) : 0.0;
    for (size_t i = 0; i < n; i++) {
        float updated = client_variate[i];
        if (scale > 0.0)
            updated = (float)((double)client_variate[i] - (double)server_variate[i] +
                              ((double)global[i] - (double)trained[i]) * scale);
        change[i] = updated - client_variate[i];
        client_variate[i] = updated;
    }
}

static fedkd_status scaffold_client(const fl_run *run, fl_client_round *c)
{
    size_t n = run->num_params;
    const float *global = c->down, *server_variate = c->down + n;
    float *client_variate = c->state;
    float *work = fedkd_alloc(n * sizeof(float));
    if (!work) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu control variates", n);
    for (size_t i = 0; i < n; i++) work[i] = server_variate[i] - client_variate[i];
    /* With FedBN the normalisation parameters are the client's own: no
     * correction towards the federation's gradient, and no variate sent. */
    fl_fedbn_zero_local(run, work);
    fedkd_status status = fl_train_private_offset(run, c, NULL, global, work);
    if (!status)
        status = fl_upload(run, c, 0, c->model->params, global, n, c->weight, FL_SEGMENT_WEIGHTS, 0);
    if (!status) {
        double k = fl_sgd_effective_steps(c->steps, run->config->local.momentum);
        fl_scaffold_update_variate(client_variate, server_variate, global, c->model->params, n, k,
                                   c->lr, work);
        fl_fedbn_zero_local(run, work);
        status = fl_upload(run, c, n, work, NULL, n, 1.0 / run->num_clients, FL_SEGMENT_WEIGHTS, n);
    }
    fedkd_free(work);
    return status;
}

static fedkd_status scaffold_server(const fl_run *run, fl_server_round *s)
{
    size_t n = run->num_params;
    double server_lr = run->config->server.lr;
    for (size_t i = 0; i < n; i++) {
        s->global[i] = (float)((double)s->global[i] + server_lr * fedkd_fixed_to_double(s->sum[i]));
        s->state[i] = (float)((double)s->state[i] + fedkd_fixed_to_double(s->sum[n + i]));
    }
    return FEDKD_OK;
}

const fl_algorithm_ops fl_scaffold_ops = {
    .check_config = scaffold_check_config,
    .payload = scaffold_payload,
    .server_state_len = scaffold_server_state_len,
    .client_state_len = scaffold_client_state_len,
    .client_round = scaffold_client,
    .server_update = scaffold_server,
};
