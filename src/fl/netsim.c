/* The simulated clock and client failures (netsim.h). */
#include "fl/netsim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/core/rng.h"
#include "fl/compress.h"
#include "fl/fl_round.h"

/* The quantities' stream numbers (b of FEDKD_RNG_NETWORK): never renumber. */
enum { QUANTITY_SPEED, QUANTITY_UP, QUANTITY_DOWN, QUANTITY_LATENCY };

static const double bytes_per_megabit = 1.0e6 / 8.0;

static fedkd_status check_distribution(const fedkd_distribution_config *d, const char *name)
{
    if (strcmp(d->distribution, "uniform") == 0 && !(d->low <= d->high))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `network.%s.low`: %g is above network.%s.high (%g); a "
                          "uniform distribution needs low <= high",
                          name, d->low, name, d->high);
    return FEDKD_OK;
}

fedkd_status fl_netsim_check_config(const fedkd_config *config, int global_model)
{
    const char *const names[] = {"speed", "up", "down", "latency"};
    const fedkd_distribution_config *d[] = {&config->network.speed, &config->network.up,
                                            &config->network.down, &config->network.latency};
    fedkd_status status = FEDKD_OK;
    for (int q = 0; q < 4 && !status; q++) status = check_distribution(d[q], names[q]);
    if (!status && config->round.deadline_seconds > 0.0 && !config->network.enabled)
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `round.deadline_seconds`: a deadline needs the simulated "
                            "clock; set network.enabled to true");
    /* FedBN keeps the normalisation entries out of the bytes but not out of
     * the delta a client compresses: the two are not reconciled yet. */
    if (!status && config->fedbn && strcmp(config->comm.compression, "none") != 0)
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `comm.compression`: \"%s\" is not supported with fedbn "
                            "yet; use \"none\"",
                            config->comm.compression);
    if (!status && strcmp(config->comm.compression, "topk") == 0 && !global_model)
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `comm.compression`: \"topk\" sparsifies weight uploads, "
                            "and algorithm `%s` uploads only soft labels; use \"float16\" or "
                            "\"int8\"",
                            config->algorithm);
    return status;
}

static double draw(const fedkd_distribution_config *d, uint64_t seed, int client, int quantity)
{
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_NETWORK, (uint64_t)client, (uint64_t)quantity);
    if (strcmp(d->distribution, "uniform") == 0)
        return d->low + (d->high - d->low) * fedkd_rng_uniform(&rng);
    if (strcmp(d->distribution, "lognormal") == 0)
        return d->value * exp(d->sigma * fedkd_rng_normal(&rng));
    return d->value;
}

fl_device fl_netsim_draw(const fedkd_config *config, int client)
{
    uint64_t seed = config->seed;
    fl_device device = {
        .speed = draw(&config->network.speed, seed, client, QUANTITY_SPEED),
        .up = draw(&config->network.up, seed, client, QUANTITY_UP) * bytes_per_megabit,
        .down = draw(&config->network.down, seed, client, QUANTITY_DOWN) * bytes_per_megabit,
        .latency = draw(&config->network.latency, seed, client, QUANTITY_LATENCY),
    };
    return device;
}

/* Splits `line` at commas into at most `most` fields (spaces trimmed). */
static int split_fields(char *line, char **fields, int most)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (n == most) return most + 1;
        fields[n++] = p;
        char *comma = strchr(p, ',');
        char *end = comma ? comma : p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' ||
                           end[-1] == '\n'))
            end--;
        if (!comma) {
            *end = '\0';
            return n;
        }
        *end = '\0';
        p = comma + 1;
    }
}

static int parse_number(const char *text, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

fedkd_status fl_netsim_read_trace(const char *path, int num_clients, const fedkd_config *config,
                                  fl_device *devices)
{
    FILE *file = fopen(path, "r");
    if (!file)
        return FEDKD_FAIL(FEDKD_ERR_IO, "config key `network.trace`: cannot open %s: %s", path,
                          strerror(errno));
    fedkd_status status = FEDKD_OK;
    char *seen = calloc((size_t)num_clients, 1);
    if (!seen) {
        fclose(file);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading %s", path);
    }
    char line[1024];
    int number = 0, data_lines = 0;
    while (!status && fgets(line, sizeof line, file)) {
        number++;
        char *start = line;
        while (*start == ' ' || *start == '\t') start++;
        if (*start == '#' || *start == '\n' || *start == '\r' || *start == '\0') continue;
        char *fields[6];
        int n = split_fields(start, fields, 5);
        double v[5] = {0, 0, 0, 0, 0};
        int numeric = 1;
        for (int i = 0; i < n && i < 5 && numeric; i++) numeric = parse_number(fields[i], &v[i]);
        /* The first data line may be a header (client,speed,up,down,...). */
        if (data_lines++ == 0 && !parse_number(fields[0], &v[0])) continue;
        if (n < 4 || n > 5) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "config key `network.trace`: %s:%d: expected "
                                "client,speed,up,down[,latency], got %d field(s)",
                                path, number, n > 5 ? 6 : n);
            break;
        }
        if (!numeric) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "config key `network.trace`: %s:%d: a field is not a number",
                                path, number);
            break;
        }
        int client = (int)v[0];
        if ((double)client != v[0] || client < 0 || client >= num_clients) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "config key `network.trace`: %s:%d: client %g is not one of "
                                "0..%d (clients.count)",
                                path, number, v[0], num_clients - 1);
            break;
        }
        if (!(v[1] > 0.0 && v[2] > 0.0 && v[3] > 0.0) || (n == 5 && !(v[4] >= 0.0))) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "config key `network.trace`: %s:%d: speed, up and down must be "
                                "> 0 and latency >= 0",
                                path, number);
            break;
        }
        if (seen[client]) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "config key `network.trace`: %s:%d: client %d appears twice",
                                path, number, client);
            break;
        }
        seen[client] = 1;
        devices[client].speed = v[1];
        devices[client].up = v[2] * bytes_per_megabit;
        devices[client].down = v[3] * bytes_per_megabit;
        devices[client].latency =
            n == 5 ? v[4] : draw(&config->network.latency, config->seed, client, QUANTITY_LATENCY);
    }
    if (!status && ferror(file))
        status = FEDKD_FAIL(FEDKD_ERR_IO, "config key `network.trace`: cannot read %s: %s", path,
                            strerror(errno));
    for (int c = 0; !status && c < num_clients; c++)
        if (!seen[c])
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "config key `network.trace`: %s: no row for client %d "
                                "(clients.count is %d; %d line(s) read)",
                                path, c, num_clients, number);
    free(seen);
    fclose(file);
    return status;
}

fedkd_status fl_netsim_create(fl_netsim *netsim, const fedkd_config *config, int num_clients)
{
    memset(netsim, 0, sizeof *netsim);
    netsim->enabled = config->network.enabled;
    netsim->num_clients = num_clients;
    netsim->deadline = config->round.deadline_seconds;
    netsim->dropout = config->round.dropout;
    netsim->seed = config->seed;
    if (!netsim->enabled) return FEDKD_OK;
    netsim->devices = calloc((size_t)num_clients, sizeof *netsim->devices);
    if (!netsim->devices)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %d simulated devices", num_clients);
    if (config->network.trace[0]) {
        fedkd_status status =
            fl_netsim_read_trace(config->network.trace, num_clients, config, netsim->devices);
        if (status) fl_netsim_free(netsim);
        return status;
    }
    for (int c = 0; c < num_clients; c++) netsim->devices[c] = fl_netsim_draw(config, c);
    return FEDKD_OK;
}

void fl_netsim_free(fl_netsim *netsim)
{
    free(netsim->devices);
    netsim->devices = NULL;
}

int fl_netsim_fails(uint64_t seed, double dropout, int round, int client)
{
    if (!(dropout > 0.0)) return 0;
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_DROPOUT, (uint64_t)round, (uint64_t)client);
    return fedkd_rng_uniform(&rng) < dropout;
}

double fl_netsim_client_seconds(const fl_device *device, double bytes_down, double bytes_up,
                                double samples)
{
    return device->latency + bytes_down / device->down + samples / device->speed +
           device->latency + bytes_up / device->up;
}

fedkd_status fl_round_plan_alloc(fl_round_plan *plan, int num_clients)
{
    memset(plan, 0, sizeof *plan);
    size_t n = (size_t)(num_clients > 0 ? num_clients : 1);
    plan->received = malloc(n * sizeof *plan->received);
    plan->dropped = malloc(n * sizeof *plan->dropped);
    plan->capacity = num_clients;
    if (!plan->received || !plan->dropped) {
        fl_round_plan_free(plan);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the round plan");
    }
    return FEDKD_OK;
}

void fl_round_plan_free(fl_round_plan *plan)
{
    free(plan->received);
    free(plan->dropped);
    plan->received = plan->dropped = NULL;
}

/* Samples client `client` trains on in `round`: its private epochs (or
 * local.steps full batches), plus the public-set fit of the soft-label
 * algorithms. */
static double round_samples(const fl_run *run, int round, int client)
{
    const fedkd_config *config = run->config;
    double samples =
        config->local.steps > 0
            ? (double)config->local.steps * (double)config->local.batch_size
            : (double)config->local.epochs *
                  (double)fedkd_partition_client_size(run->partition, client);
    if (run->algorithm->ops->public_samples)
        samples += (double)run->algorithm->ops->public_samples(run, round);
    return samples;
}

void fl_netsim_plan(const fl_netsim *netsim, const fl_run *run, int round, const int *selected,
                    int m, fl_round_plan *plan)
{
    plan->num_received = plan->num_dropped = 0;
    plan->seconds = 0.0;
    double bytes_down = 0.0, bytes_up = 0.0;
    if (netsim->enabled) {
        fl_payload payload = run->algorithm->ops->payload(run, round);
        bytes_down = (double)(payload.sent_down ? payload.sent_down : payload.down) * sizeof(float);
        bytes_up = (double)fl_upload_bytes(run->config, &payload);
    }
    double slowest = 0.0;
    for (int i = 0; i < m; i++) {
        int client = selected[i];
        int dropped = fl_netsim_fails(netsim->seed, netsim->dropout, round, client);
        if (netsim->enabled) {
            double seconds = fl_netsim_client_seconds(&netsim->devices[client], bytes_down,
                                                      bytes_up, round_samples(run, round, client));
            if (netsim->deadline > 0.0 && seconds > netsim->deadline) dropped = 1;
            if (seconds > slowest) slowest = seconds;
        }
        if (dropped) plan->dropped[plan->num_dropped++] = client;
        else plan->received[plan->num_received++] = client;
    }
    /* Under a deadline the server cannot tell a failed client from a late
     * one: it waits until the deadline. Without one, a failure is noticed
     * when the client would have reported. */
    if (netsim->enabled)
        plan->seconds = netsim->deadline > 0.0 && plan->num_dropped > 0 ? netsim->deadline : slowest;
}

int fl_round_participants(const fl_run *run, int round, fl_round_plan *plan)
{
    const fedkd_config *config = run->config;
    int m = fedkd_select_clients(config->seed, round, run->num_clients, config->clients.per_round,
                                 plan->dropped);
    if (m < 0) return -1;
    /* The plan writes received and dropped from the selection: copy it out first. */
    int *selected = malloc((size_t)m * sizeof *selected + 1);
    if (!selected) return -1;
    memcpy(selected, plan->dropped, (size_t)m * sizeof *selected);
    fl_netsim_plan(run->netsim, run, round, selected, m, plan);
    free(selected);
    return plan->num_received;
}
