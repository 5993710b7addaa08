/* What a rank of a federation will hold, estimated before its models and
 * buffers are allocated (the data is loaded by then and counted as it is),
 * so that a run too large for its nodes is refused in seconds. */
#include <stdio.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/core/memory.h"
#include "fl/compress.h"
#include "fl/federation_private.h"

static double dataset_bytes(const fedkd_dataset *d)
{
    if (!d) return 0.0;
    return (double)d->count * ((double)fedkd_dataset_sample_floats(d) * sizeof(float) +
                               sizeof(int32_t));
}

/* Floats of optimizer state per parameter. */
static double optimizer_floats(const fedkd_config *config)
{
    if (strcmp(config->local.optimizer, "adam") == 0) return 2.0;
    return config->local.momentum > 0.0 ? 1.0 : 0.0;
}

/* A model at `batch` plus its optimizer's state. */
static fedkd_status trained_model_bytes(const fedkd_config *config, const fedkd_model_spec *spec,
                                        int batch, double *bytes)
{
    size_t params = 0;
    double model = 0.0;
    fedkd_status status = fedkd_model_estimate(spec, batch, &params, &model);
    if (status) return status;
    *bytes = model + optimizer_floats(config) * (double)params * sizeof(float);
    return FEDKD_OK;
}

fedkd_status fl_fed_memory_estimate(const federation *f, double *bytes, double *node_shared,
                                    char *account, size_t account_size)
{
    const fedkd_config *config = f->config;
    const fl_run *run = &f->run;
    double data = dataset_bytes(f->data.test) + dataset_bytes(f->data.public_set);
    for (int h = 0; h < f->num_hosted; h++) data += dataset_bytes(f->client_data[h]);

    double models = 0.0, buffers = 0.0;
    fedkd_status status = FEDKD_OK;
    if (f->num_hosted > 0) {
        /* One model and optimizer per clients.models entry the rank's clients use. */
        for (int e = 0; e < run->models.num_entries && !status; e++) {
            int used = 0;
            for (int h = 0; h < f->num_hosted && !used; h++)
                used = fl_client_model_entry(&run->models, f->hosted[h]) == e;
            double one = 0.0;
            if (used) status = trained_model_bytes(config, &run->models.specs[e],
                                                   config->local.batch_size, &one);
            models += one;
        }
        /* Clients that keep their own models keep them (and their optimizer)
         * between rounds. */
        if (!f->algorithm->global_model)
            buffers += (double)f->num_hosted * (double)run->models.max_params *
                       (1.0 + optimizer_floats(config)) * sizeof(float);
    }
    size_t global_params = 0;
    double global_model = 0.0;
    if (!status) status = fedkd_model_estimate(&f->spec, 1, &global_params, &global_model);
    if (!status && f->rank == 0) {
        double eval = 0.0, server = 0.0;
        size_t params = 0;
        status = fedkd_model_estimate(&f->spec, config->eval_batch_size, &params, &eval);
        if (!status && f->algorithm->ops->needs_server_model)
            status = trained_model_bytes(config, &f->spec, config->local.batch_size, &server);
        models += eval + server;
        buffers += (double)global_params * sizeof(float); /* the global weights */
    }
    /* FedDF over mixed models: the other architectures' global models (the
     * server state, and in every rank's broadcast), on rank 0 each with an
     * evaluation and a trainable copy. */
    int globals = f->algorithm->global_model ? run->models.num_architectures : 1;
    for (int g = 1; g < globals && !status; g++) {
        const fedkd_model_spec *spec = &run->models.specs[run->models.architecture_entry[g]];
        size_t params = run->models.architecture_params[g];
        buffers += (f->rank == 0 ? 2.0 : 1.0) * (double)params * sizeof(float);
        global_params += params;
        double eval = 0.0, server = 0.0;
        if (f->rank == 0) status = fedkd_model_estimate(spec, config->eval_batch_size, &params, &eval);
        if (!status && f->rank == 0 && f->algorithm->ops->needs_server_model)
            status = trained_model_bytes(config, spec, config->local.batch_size, &server);
        models += eval + server;
    }
    /* Top-k's error residuals, a weight upload's worth per hosted client
     * (compress.h); payload() gives the segments before num_params is set. */
    if (!status && f->algorithm->global_model && fl_compression_of(config) == FL_COMPRESS_TOPK) {
        fl_payload payload = f->algorithm->ops->payload(run, 2);
        buffers += (double)f->num_hosted * (double)payload.up_weight_segments *
                   (double)global_params * sizeof(float);
    }
    /* The summed contributions as 64-bit integers: weights, or logits on the
     * round's public sample; rank 0 also holds the reduced copy. */
    double sum_floats = (double)global_params;
    double logits = (double)run->sample_len * (double)f->data.num_classes;
    if (logits > sum_floats) sum_floats = logits;
    buffers += (f->rank == 0 ? 2.0 : 1.0) * sum_floats * sizeof(int64_t);
    /* Every rank holds the broadcast payload. */
    buffers += sum_floats * sizeof(float);
    if (status) return status;

    *bytes = data + models + buffers;
    /* With P > 1 each node's ranks also share one copy of the sum, the
     * payload and the round header. */
    *node_shared = f->size > 1 ? sum_floats * (sizeof(int64_t) + sizeof(float)) +
                                     (double)f->num_clients * sizeof(int)
                               : 0.0;
    char d[32], m[32], b[32];
    fedkd_memory_format(data, d, sizeof d);
    fedkd_memory_format(models, m, sizeof m);
    fedkd_memory_format(buffers, b, sizeof b);
    snprintf(account, account_size, "models %s, data %s, buffers %s", m, d, b);
    return FEDKD_OK;
}
