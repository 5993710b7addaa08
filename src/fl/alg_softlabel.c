/* The round hooks of the soft-label federations whose clients keep their
 * own models (../shared/METHODS.md): FedMD, DS-FL, FD and deep mutual
 * learning across clients. Only predictions travel, so clients may train
 * different architectures; the loop (federation.c) loads each client's
 * model before its round and stores it after.
 *
 * FedMD, DS-FL and DML: round r's participants first fit the server state
 * (the consensus formed from round r - 1's uploads, on round r's public
 * sample), then train on their own data, then upload their predictions on
 * round r + 1's sample (fl_round.h explains the half-round shift). Round 1
 * has no consensus yet: clients only train and upload.
 *
 *   payload     down (r > 1)           up (per participant)
 *   FedMD       S x C consensus logits S x C logits
 *   DS-FL       S x C sharpened probs  S x C probabilities
 *   DML         S x C mean probs       S x C probabilities
 *   FD          C x C + C              C x C per-class mean logits + C counts
 *
 * with S = the public sample per round, C = classes. Every sum is the
 * participants' exact fixed-point sum; weights are 1 / participants (FD:
 * the client's share of each class's samples). */
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fl/compress.h"
#include "fl/fl_round.h"
#include "fl/netsim.h"
#include "fl/softlabel.h"

static size_t sample_floats(const fl_run *run)
{
    return run->sample_len * (size_t)run->num_classes;
}

/* FedMD, DS-FL, DML: soft labels on the public sample both ways. */
static fl_payload public_payload(const fl_run *run, int round)
{
    size_t floats = sample_floats(run);
    fl_payload p = {.down = round > 1 ? floats : 0, .up = floats, .sent_up = floats,
                    .up_soft = floats};
    return p;
}

/* The simulated clock's count of public samples fitted: epochs of the
 * server state, from round 2 on. */
static size_t fedmd_public_samples(const fl_run *run, int round)
{
    return round > 1 ? (size_t)run->config->fedmd.digest_epochs * run->sample_len : 0;
}

static size_t dsfl_public_samples(const fl_run *run, int round)
{
    return round > 1 ? (size_t)run->config->dsfl.epochs * run->sample_len : 0;
}

static size_t dml_public_samples(const fl_run *run, int round)
{
    return round > 1 ? (size_t)run->config->dml.epochs * run->sample_len : 0;
}

static size_t public_state_len(const fl_run *run)
{
    return sample_floats(run);
}

/* Settings of a fit on the public sample: its own shuffle stream per client
 * and round, batches of local.batch_size. */
static fl_distil_settings public_fit(const fl_run *run, const fl_client_round *c, int epochs,
                                     fl_target_kind kind, float temperature)
{
    fl_distil_settings d = {
        .kind = kind,
        .temperature = temperature,
        .epochs = epochs,
        .batch_size = run->config->local.batch_size,
        .seed = run->config->seed,
        .stream_a = FL_PUBLIC_SHUFFLE_A + (uint64_t)c->client,
        .stream_b = (uint64_t)(c->round - 1) * (uint64_t)(epochs > 0 ? epochs : 1),
    };
    return d;
}

/* Fits `targets` on this round's sample, then resets the optimizer: the
 * private training that follows starts fresh, as it does in round 1. */
static fedkd_status fit_public(const fl_run *run, fl_client_round *c, const float *targets,
                               const fl_distil_settings *d)
{
    if (d->epochs <= 0) return FEDKD_OK;
    fedkd_status status = fl_distil(c->model, c->optimizer, run->public_set, c->sample, targets,
                                    NULL, run->sample_len, d, NULL);
    fedkd_optimizer_reset(c->optimizer);
    return status;
}

/* The upload of FedMD (logits) or DS-FL / DML (probabilities) on the next
 * round's sample, each participant weighted 1 / participants. */
static fedkd_status upload_predictions(const fl_run *run, fl_client_round *c, int probabilities)
{
    size_t floats = sample_floats(run);
    float *logits = fedkd_alloc(floats * sizeof(float));
    if (!logits) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu logits", floats);
    fedkd_status status =
        fl_logits_on_rows(c->model, run->public_set, c->next_sample, run->sample_len, logits);
    if (!status && probabilities)
        fedkd_softmax(logits, logits, (int)run->sample_len, run->num_classes, 1.0f);
    if (!status)
        status = fl_upload(run, c, 0, logits, NULL, floats, 1.0 / c->count, FL_SEGMENT_SOFT, 0);
    fedkd_free(logits);
    return status;
}

/* The server state is the decoded mean (FedMD, DML, FD). */
static fedkd_status state_is_mean(const fl_run *run, fl_server_round *s)
{
    fl_payload p = run->algorithm->ops->payload(run, s->round);
    fl_fixed_decode(s->sum, p.up, s->state);
    return FEDKD_OK;
}

/* ---- FedMD ------------------------------------------------------------------
 * Digest: fedmd.digest_epochs on the consensus logits, MAE on logits
 * (fedmd.digest_loss "mae") or KL at kd.temperature ("kl"); revisit:
 * local.epochs on the private data. */

static fedkd_status fedmd_client(const fl_run *run, fl_client_round *c)
{
    const fedkd_config *config = run->config;
    fedkd_status status = FEDKD_OK;
    if (c->down) {
        int kl = strcmp(config->fedmd.digest_loss, "kl") == 0;
        float temperature = (float)config->kd.temperature;
        fl_distil_settings d = public_fit(run, c, config->fedmd.digest_epochs,
                                          kl ? FL_TARGET_PROBS_KL : FL_TARGET_LOGITS_MAE,
                                          temperature);
        float *probs = NULL;
        const float *targets = c->down;
        if (kl) {
            probs = fedkd_alloc(sample_floats(run) * sizeof(float));
            if (!probs) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the consensus");
            fedkd_softmax(c->down, probs, (int)run->sample_len, run->num_classes, temperature);
            targets = probs;
        }
        status = fit_public(run, c, targets, &d);
        fedkd_free(probs);
    }
    if (!status) status = fl_train_private(run, c, NULL, NULL);
    if (!status) status = upload_predictions(run, c, 0);
    return status;
}

const fl_algorithm_ops fl_fedmd_ops = {
    .payload = public_payload,
    .server_state_len = public_state_len,
    .client_round = fedmd_client,
    .server_update = state_is_mean,
    .public_samples = fedmd_public_samples,
};

/* ---- DS-FL --------------------------------------------------------------------
 * Clients upload probabilities; the server state is their mean sharpened
 * by entropy-reduction aggregation at dsfl.temperature; clients fit it for
 * dsfl.epochs (KL at T = 1), then train on their data. */

static fedkd_status dsfl_client(const fl_run *run, fl_client_round *c)
{
    fedkd_status status = FEDKD_OK;
    if (c->down) {
        fl_distil_settings d =
            public_fit(run, c, run->config->dsfl.epochs, FL_TARGET_PROBS_KL, 1.0f);
        status = fit_public(run, c, c->down, &d);
    }
    if (!status) status = fl_train_private(run, c, NULL, NULL);
    if (!status) status = upload_predictions(run, c, 1);
    return status;
}

static fedkd_status dsfl_server(const fl_run *run, fl_server_round *s)
{
    size_t floats = sample_floats(run);
    float *mean = fedkd_alloc(floats * sizeof(float));
    if (!mean) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu soft labels", floats);
    fl_fixed_decode(s->sum, floats, mean);
    fl_sharpen(mean, run->sample_len, run->num_classes, (float)run->config->dsfl.temperature,
               s->state);
    fedkd_free(mean);
    return FEDKD_OK;
}

const fl_algorithm_ops fl_dsfl_ops = {
    .payload = public_payload,
    .server_state_len = public_state_len,
    .client_round = dsfl_client,
    .server_update = dsfl_server,
    .public_samples = dsfl_public_samples,
};

/* ---- DML across clients ---------------------------------------------------------
 * Peer i's mutual term 1/(K-1) sum_{j != i} KL(p_j || p_i) on the public
 * sample, with p_j the predictions the other K - 1 uploaders of round r - 1
 * made: the server sends their mean over all K; a client that was one of
 * them takes its own share out (its model has not changed since it
 * uploaded, so it recomputes that share exactly). dml.epochs on that term,
 * then local.epochs of cross-entropy on its own data. */

/* The mutual term's fit, when round r - 1 had a peer other than this client. */
static fedkd_status dml_fit(const fl_run *run, fl_client_round *c, int *previous, float *own,
                            float *others)
{
    const fedkd_config *config = run->config;
    /* The uploaders of round r - 1: its participants that reported. */
    fl_round_plan plan;
    fedkd_status status = fl_round_plan_alloc(&plan, run->num_clients);
    if (status) return status;
    int k = fl_round_participants(run, c->round - 1, &plan);
    if (k > 0) memcpy(previous, plan.received, (size_t)k * sizeof *previous);
    fl_round_plan_free(&plan);
    if (k < 0) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory selecting clients");
    int was_peer = 0;
    for (int i = 0; i < k; i++) was_peer |= previous[i] == c->client;
    if (was_peer && k < 2) return FEDKD_OK; /* it was the only uploader */
    const float *targets = c->down;
    if (was_peer) {
        status = fl_logits_on_rows(c->model, run->public_set, c->sample, run->sample_len, own);
        if (status) return status;
        fedkd_softmax(own, own, (int)run->sample_len, run->num_classes, 1.0f);
        /* Its share as the server received it. */
        fl_compress_soft(config, own, sample_floats(run));
        fl_mean_of_others(c->down, own, k, run->sample_len, run->num_classes, others);
        targets = others;
    }
    fl_distil_settings d = public_fit(run, c, config->dml.epochs, FL_TARGET_PROBS_KL, 1.0f);
    return fit_public(run, c, targets, &d);
}

static fedkd_status dml_client(const fl_run *run, fl_client_round *c)
{
    fedkd_status status = FEDKD_OK;
    if (c->down && run->config->dml.epochs > 0) {
        size_t floats = sample_floats(run);
        int *previous = malloc((size_t)run->num_clients * sizeof *previous);
        float *own = fedkd_alloc(floats * sizeof(float));
        float *others = fedkd_alloc(floats * sizeof(float));
        status = previous && own && others
                     ? dml_fit(run, c, previous, own, others)
                     : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu soft labels", floats);
        free(previous);
        fedkd_free(own);
        fedkd_free(others);
    }
    if (!status) status = fl_train_private(run, c, NULL, NULL);
    if (!status) status = upload_predictions(run, c, 1);
    return status;
}

const fl_algorithm_ops fl_dml_ops = {
    .payload = public_payload,
    .server_state_len = public_state_len,
    .client_round = dml_client,
    .server_update = state_is_mean,
    .public_samples = dml_public_samples,
};

/* ---- FD --------------------------------------------------------------------------
 * Clients train on their data with KD (kd.temperature, kd.weight) towards
 * softmax_T of the global mean logits of each sample's class (none in round
 * 1, and none for classes no participant of the last round had), then
 * upload their per-class mean logits and class counts. The server state is
 * the global per-class mean (each class weighted by its samples) and the
 * global counts. No public set. */

static fl_payload fd_payload(const fl_run *run, int round)
{
    size_t floats = (size_t)run->num_classes * (size_t)(run->num_classes + 1);
    fl_payload p = {.down = round > 1 ? floats : 0, .up = floats, .sent_up = floats,
                    .up_soft = (size_t)run->num_classes * (size_t)run->num_classes};
    return p;
}

static size_t fd_state_len(const fl_run *run)
{
    return (size_t)run->num_classes * (size_t)(run->num_classes + 1);
}

static fedkd_status fd_client(const fl_run *run, fl_client_round *c)
{
    int classes = run->num_classes;
    size_t matrix = (size_t)classes * (size_t)classes;
    fl_class_teacher context = {.class_logits = c->down, .class_counts = c->down + matrix,
                                .labels = c->data->labels, .classes = classes};
    fedkd_teacher teacher = fl_class_teacher_hook(&context);
    fedkd_status status = fl_train_private(run, c, c->down ? &teacher : NULL, NULL);
    if (status) return status;
    float *means = fedkd_alloc((matrix + (size_t)classes) * sizeof(float));
    uint32_t *counts = malloc((size_t)classes * sizeof *counts);
    if (!means || !counts) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for per-class logits");
        goto done;
    }
    status = fl_class_mean_logits(c->model, c->data, means, counts);
    /* The C x C matrix travels compressed as one segment; the counts exact. */
    if (!status) fl_compress_soft(run->config, means, matrix);
    /* Each class's mean over all participants' samples of it: the partition
     * tells every rank how many each participant has. */
    for (int k = 0; !status && k < classes; k++) {
        uint64_t total = 0;
        for (int i = 0; i < c->count; i++)
            total += run->partition->histograms[(size_t)c->selected[i] * (size_t)classes + (size_t)k];
        uint32_t expected =
            run->partition->histograms[(size_t)c->client * (size_t)classes + (size_t)k];
        if (counts[k] != expected)
            status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                                "FD: client %d holds %u samples of class %d, its partition "
                                "histogram says %u",
                                c->client, counts[k], k, expected);
        else if (counts[k] > 0)
            status = fedkd_fixed_accumulate(c->sum + (size_t)k * (size_t)classes,
                                            means + (size_t)k * (size_t)classes, (size_t)classes,
                                            (double)counts[k] / (double)total);
        means[matrix + (size_t)k] = (float)counts[k];
    }
    if (!status) status = fedkd_fixed_accumulate(c->sum + matrix, means + matrix,
                                                  (size_t)classes, 1.0);
done:
    fedkd_free(means);
    free(counts);
    return status;
}

const fl_algorithm_ops fl_fd_ops = {
    .payload = fd_payload,
    .server_state_len = fd_state_len,
    .client_round = fd_client,
    .server_update = state_is_mean,
};
