/* Recomputes a soft-label federation's server state from a checkpoint (a
 * test tool, not part of the simulator).
 *
 *   softlabel_check CHECKPOINT
 *
 * After round R the server keeps what round R's participants uploaded, and
 * a participant's model has not changed since it uploaded. So the state can
 * be recomputed independently from the checkpoint alone: the config, the
 * partition and the participants' models (their /clients/state rows), with
 * the data loaded afresh:
 *   fedmd  the mean of the participants' logits on round R + 1's sample
 *   dsfl   softmax(mean of their probabilities / dsfl.temperature)
 *   dml    the mean of their probabilities
 *   fd     per class k: sum over participants c of (n_ck / N_k) times c's
 *          mean logits over its samples of class k; then the counts N_k
 * Sums run in double here, in exact fixed point in the simulator: they agree
 * to 1e-6 (relative above 1). With one participant FedMD's state is its
 * logits to 2^-40. Exits 0 when the state matches, 1 (saying where) if not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "fedkd/io/checkpoint.h"
#include "fedkd/data/clientset.h"
#include "fedkd/core/core.h"
#include "fl/client_models.h"
#include "fl/softlabel.h"

static int fail(const char *what)
{
    fprintf(stderr, "softlabel_check: %s: %s\n", what, fedkd_error_message());
    return 1;
}

/* The checkpoint's config, through a temporary file. */
static fedkd_status load_config(const char *json, fedkd_config *config)
{
    char path[] = "/tmp/fedkd-softlabel-check-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return FEDKD_FAIL(FEDKD_ERR_IO, "cannot create a temporary file");
    size_t length = strlen(json);
    int written = write(fd, json, length) == (ssize_t)length;
    close(fd);
    fedkd_status status = written ? fedkd_config_load(config, path, NULL, 0)
                                  : FEDKD_FAIL(FEDKD_ERR_IO, "cannot write %s", path);
    unlink(path);
    return status;
}

typedef struct check {
    fedkd_checkpoint k;
    fedkd_config config;
    fedkd_client_set set;
    fl_client_models models;
    int participants[4096];
    int count;
    int classes;
    double *expected;    /* the recomputed state */
} check;

/* Participant i's model with its checkpointed parameters. */
static fedkd_status participant_model(check *c, int i, fedkd_model **model)
{
    int client = c->participants[i];
    const fedkd_model_spec *spec = &c->models.specs[fl_client_model_entry(&c->models, client)];
    float *row = malloc(c->k.client_state_len * sizeof *row);
    fedkd_status status = row ? fedkd_checkpoint_read_client_states(c->k.path, &client, 1,
                                                                    c->k.client_state_len, row)
                              : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory");
    /* Batches as the simulator's clients use: a matrix product's last bits
     * depend on the batch size. */
    if (!status) status = fedkd_model_create(model, spec, c->config.local.batch_size);
    if (!status) memcpy((*model)->params, row, (*model)->num_params * sizeof(float));
    free(row);
    return status;
}

static fedkd_status recompute_public(check *c, size_t *len)
{
    const char *algorithm = c->config.algorithm;
    size_t public_count = c->set.public_count;
    size_t n = fl_public_sample_size(public_count, c->config.public_set.per_round);
    size_t floats = n * (size_t)c->classes;
    uint32_t *rows = malloc((n ? n : 1) * sizeof *rows);
    float *out = malloc(floats * sizeof *out);
    c->expected = calloc(floats, sizeof *c->expected);
    fedkd_status status = FEDKD_OK;
    if (!rows || !out || !c->expected) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory");
    fl_public_sample(c->config.seed, c->k.round + 1, public_count, c->config.public_set.per_round,
                     rows);
    for (int i = 0; !status && i < c->count; i++) {
        fedkd_model *model = NULL;
        status = participant_model(c, i, &model);
        if (!status) status = fl_logits_on_rows(model, c->set.public_set, rows, n, out);
        if (!status && strcmp(algorithm, "fedmd") != 0)
            fedkd_softmax(out, out, (int)n, c->classes, 1.0f);
        for (size_t j = 0; !status && j < floats; j++) c->expected[j] += (double)out[j] / c->count;
        fedkd_model_destroy(&model);
    }
    if (!status && strcmp(algorithm, "dsfl") == 0) {
        for (size_t j = 0; j < floats; j++) out[j] = (float)c->expected[j];
        fl_sharpen(out, n, c->classes, (float)c->config.dsfl.temperature, out);
        for (size_t j = 0; j < floats; j++) c->expected[j] = out[j];
    }
    free(rows);
    free(out);
    *len = floats;
    return status;
}

static fedkd_status recompute_fd(check *c, size_t *len)
{
    int classes = c->classes;
    size_t matrix = (size_t)classes * (size_t)classes;
    c->expected = calloc(matrix + (size_t)classes, sizeof *c->expected);
    float *means = malloc(matrix * sizeof *means);
    uint32_t *counts = malloc((size_t)classes * sizeof *counts);
    double *totals = calloc((size_t)classes, sizeof *totals);
    if (!c->expected || !means || !counts || !totals) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "memory");
    fedkd_status status = FEDKD_OK;
    for (int i = 0; i < c->count; i++)
        for (int k = 0; k < classes; k++)
            totals[k] += c->set.partition->histograms[(size_t)c->participants[i] * (size_t)classes + (size_t)k];
    for (int i = 0; !status && i < c->count; i++) {
        fedkd_model *model = NULL;
        int h = fedkd_client_set_find(&c->set, c->participants[i]);
        status = participant_model(c, i, &model);
        if (!status) status = fl_class_mean_logits(model, c->set.data[h], means, counts);
        for (int k = 0; !status && k < classes; k++) {
            for (int j = 0; counts[k] && j < classes; j++)
                c->expected[(size_t)k * (size_t)classes + (size_t)j] +=
                    (double)counts[k] / totals[k] * (double)means[(size_t)k * (size_t)classes + (size_t)j];
            c->expected[matrix + (size_t)k] += counts[k];
        }
        fedkd_model_destroy(&model);
    }
    free(means);
    free(counts);
    free(totals);
    *len = matrix + (size_t)classes;
    return status;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc != 2) {
        fprintf(stderr, "usage: softlabel_check CHECKPOINT\n");
        MPI_Finalize();
        return 2;
    }
    static check c;
    int failures = 0;
    if (fedkd_checkpoint_read(argv[1], &c.k)) return fail("read");
    if (load_config(c.k.config_json, &c.config)) return fail("config");
    c.count = fedkd_select_clients(c.config.seed, c.k.round, c.config.clients.count,
                                   c.config.clients.per_round, c.participants);
    int fd = strcmp(c.config.algorithm, "fd") == 0;
    unsigned flags = fd ? 0 : FEDKD_CLIENTSET_PUBLIC | FEDKD_CLIENTSET_LOAD_PUBLIC;
    if (fedkd_client_set_load(&c.config, c.participants, c.count, flags, &c.set))
        return fail("data");
    c.classes = c.set.num_classes;
    if (fl_client_models_resolve(&c.config, c.set.shape, c.classes, &c.models)) return fail("models");
    size_t len = 0;
    if ((fd ? recompute_fd(&c, &len) : recompute_public(&c, &len))) return fail("recompute");
    if (len != c.k.server_state_len) {
        fprintf(stderr, "softlabel_check: %s: the server state holds %zu values, expected %zu\n",
                argv[1], c.k.server_state_len, len);
        failures++;
    }
    double tolerance = c.count == 1 && strcmp(c.config.algorithm, "fedmd") == 0 ? 0x1p-40 : 1e-6;
    double worst = 0.0;
    for (size_t i = 0; !failures && i < len; i++) {
        double got = c.k.server_state[i], want = c.expected[i];
        double error = fabs(got - want) / fmax(1.0, fabs(want));
        if (error > worst) worst = error;
        if (error > tolerance && failures++ < 5)
            fprintf(stderr, "softlabel_check: %s: state[%zu] = %.9g, recomputed %.9g\n", argv[1],
                    i, got, want);
    }
    if (!failures)
        printf("%s: %s state of round %d (%d participant(s), %zu values) matches to %.3g\n",
               argv[1], c.config.algorithm, c.k.round, c.count, len, worst);
    free(c.expected);
    fl_client_models_free(&c.models);
    fedkd_client_set_free(&c.set);
    fedkd_config_free(&c.config);
    fedkd_checkpoint_clear(&c.k);
    MPI_Finalize();
    return failures ? 1 : 0;
}
