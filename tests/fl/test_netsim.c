/* The simulated clock, dropouts and compressed uploads (src/fl/netsim.c,
 * src/fl/compress.c), one MPI process:
 * - a client's simulated time and a round's plan on numbers worked out by
 *   hand; a deadline drops exactly the clients slower than it;
 * - the device draws: constant exact, uniform within bounds, the same for
 *   the same seed and different for another; dropouts at the rate asked;
 * - float16 and int8 round trips within their stated error; top-k keeps
 *   the k largest (ties to the lower index);
 * - top-k with error feedback at k = all adds what plain averaging adds,
 *   bit for bit, and leaves no residual; below k = all nothing is lost
 *   (sent + residual = deltas);
 * - compressed bytes equal the formula, per segment and per upload;
 * - whole federations: top-k at fraction 1 gives FedAvg's and SCAFFOLD's
 *   final model bit for bit, with bytes_up by the formula. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/core/core.h"
#include "fedkd/experiments/experiments.h"
#include "fl/compress.h"
#include "fl/fl_round.h"
#include "fl/netsim.h"
#include "../test_util.h"

static int load(fedkd_config *config, const char *const *overrides, int n)
{
    fedkd_status status = fedkd_config_load(config, NULL, overrides, n);
    CHECK(status == FEDKD_OK, "config: %s", fedkd_error_message());
    return status != FEDKD_OK;
}

/* A run of `algorithm` over clients of the given sizes, with 1000
 * parameters, for the plan (no data: the plan reads only sizes). */
typedef struct fake_run {
    fedkd_config config;
    fl_run run;
    fedkd_partition partition;
    size_t offsets[9];
    fl_netsim netsim;
    fl_device devices[8];
} fake_run;

static int fake_run_init(fake_run *f, const char *const *overrides, int n, const size_t *sizes,
                         int clients)
{
    memset(f, 0, sizeof *f);
    if (load(&f->config, overrides, n)) return 1;
    f->offsets[0] = 0;
    for (int c = 0; c < clients; c++) f->offsets[c + 1] = f->offsets[c] + sizes[c];
    f->partition.num_clients = clients;
    f->partition.offsets = f->offsets;
    const fedkd_algorithm *algorithm = NULL;
    fedkd_status status = fedkd_algorithm_find(f->config.algorithm, &algorithm);
    CHECK(status == FEDKD_OK, "algorithm: %s", fedkd_error_message());
    if (status) return 1;
    f->run.config = &f->config;
    f->run.algorithm = algorithm;
    f->run.num_clients = clients;
    f->run.num_classes = 4;
    f->run.partition = &f->partition;
    f->run.num_params = 1000;
    f->netsim.enabled = f->config.network.enabled;
    f->netsim.num_clients = clients;
    f->netsim.devices = f->devices;
    f->netsim.deadline = f->config.round.deadline_seconds;
    f->netsim.dropout = f->config.round.dropout;
    f->netsim.seed = f->config.seed;
    f->run.netsim = &f->netsim;
    return 0;
}

static void check_clock_by_hand(void)
{
    /* speed 100 samples/s, up 1e4 B/s, down 2e4 B/s, latency 0.5 s; 4000
     * bytes each way, 100 samples: 0.5 + 0.2 + 1 + 0.5 + 0.4 = 2.6 s. */
    fl_device d = {.speed = 100.0, .up = 1.0e4, .down = 2.0e4, .latency = 0.5};
    CHECK_CLOSE(fl_netsim_client_seconds(&d, 4000.0, 4000.0, 100.0), 2.6, 1e-12,
                "one client's round");

    /* Constant draws are the values, bandwidths in Mbit/s. */
    const char *overrides[] = {"network.speed.value=250", "network.up.value=2",
                               "network.down.value=16", "network.latency.value=0.03"};
    fedkd_config config;
    if (load(&config, overrides, 4)) return;
    fl_device drawn = fl_netsim_draw(&config, 3);
    CHECK(drawn.speed == 250.0 && drawn.up == 250000.0 && drawn.down == 2000000.0 &&
              drawn.latency == 0.03,
          "constant device: %g %g %g %g", drawn.speed, drawn.up, drawn.down, drawn.latency);
    fedkd_config_free(&config);

    /* Uniform within its bounds; log-normal around its median; the same
     * seed the same device, another seed another one. */
    const char *spread[] = {"network.speed.distribution=uniform", "network.speed.low=10",
                            "network.speed.high=20", "network.up.distribution=lognormal",
                            "network.up.value=4", "network.up.sigma=0.5"};
    const char *reseeded[] = {"network.speed.distribution=uniform", "network.speed.low=10",
                              "network.speed.high=20", "seed=9"};
    fedkd_config a, b;
    if (load(&a, spread, 6)) return;
    if (load(&b, reseeded, 4)) return;
    int inside = 1, below_median = 0, differ = 0;
    for (int c = 0; c < 400; c++) {
        fl_device x = fl_netsim_draw(&a, c), again = fl_netsim_draw(&a, c);
        fl_device y = fl_netsim_draw(&b, c);
        inside &= x.speed >= 10.0 && x.speed < 20.0;
        below_median += x.up < 4.0 * 125000.0;
        differ += x.speed != y.speed;
        CHECK(memcmp(&x, &again, sizeof x) == 0, "client %d: two draws differ", c);
    }
    CHECK(inside, "a uniform speed fell outside [10, 20)");
    CHECK(below_median > 160 && below_median < 240, "log-normal: %d of 400 below the median",
          below_median);
    CHECK(differ > 390, "another seed changed only %d of 400 speeds", differ);
    fedkd_config_free(&a);
    fedkd_config_free(&b);
}

static void check_plan_and_deadline(void)
{
    /* FedAvg, 1000 parameters: 4000 bytes down and up; 8 Mbit/s = 1e6 B/s
     * each way, no latency, 10 samples/s, 2 epochs over sizes 10, 20, 30,
     * 40: 0.008 + 2 n / 10 = 2.008, 4.008, 6.008, 8.008 s. */
    const size_t sizes[] = {10, 20, 30, 40};
    const char *overrides[] = {"algorithm=fedavg", "local.epochs=2", "network.enabled=true",
                               "round.deadline_seconds=5"};
    fake_run f;
    if (fake_run_init(&f, overrides, 4, sizes, 4)) return;
    for (int c = 0; c < 4; c++)
        f.devices[c] = (fl_device){.speed = 10.0, .up = 1.0e6, .down = 1.0e6, .latency = 0.0};
    fl_round_plan plan;
    if (fl_round_plan_alloc(&plan, 4)) return;
    const int selected[] = {0, 1, 2, 3};
    fl_netsim_plan(&f.netsim, &f.run, 1, selected, 4, &plan);
    CHECK(plan.num_received == 2 && plan.received[0] == 0 && plan.received[1] == 1,
          "deadline 5 s: %d received", plan.num_received);
    CHECK(plan.num_dropped == 2 && plan.dropped[0] == 2 && plan.dropped[1] == 3,
          "deadline 5 s: %d dropped", plan.num_dropped);
    CHECK(plan.seconds == 5.0, "a round with late clients lasts the deadline, not %g",
          plan.seconds);
    /* Just above the slowest: nobody dropped, the round is the slowest's. */
    f.netsim.deadline = 8.0081;
    fl_netsim_plan(&f.netsim, &f.run, 1, selected, 4, &plan);
    CHECK(plan.num_received == 4 && plan.num_dropped == 0, "deadline 8.0081 s dropped %d",
          plan.num_dropped);
    CHECK_CLOSE(plan.seconds, 8.008, 1e-12, "synchronous round time");
    /* Just below it: only the slowest. */
    f.netsim.deadline = 8.0079;
    fl_netsim_plan(&f.netsim, &f.run, 1, selected, 4, &plan);
    CHECK(plan.num_dropped == 1 && plan.dropped[0] == 3, "deadline 8.0079 s: %d dropped",
          plan.num_dropped);
    /* A subset: only the selected count. */
    const int some[] = {0, 2};
    f.netsim.deadline = 0.0;
    fl_netsim_plan(&f.netsim, &f.run, 1, some, 2, &plan);
    CHECK(plan.num_received == 2 && plan.received[1] == 2, "subset: %d received",
          plan.num_received);
    CHECK_CLOSE(plan.seconds, 6.008, 1e-12, "subset round time");
    /* Compressed uploads take less time: int8 sends 1000 + 4 bytes. */
    snprintf(f.config.comm.compression, sizeof f.config.comm.compression, "int8");
    fl_netsim_plan(&f.netsim, &f.run, 1, some, 2, &plan);
    CHECK_CLOSE(plan.seconds, 0.004 + 1004.0 / 1.0e6 + 6.0, 1e-12, "int8 upload round time");
    /* Without the clock: everyone reports, no time passes. */
    f.netsim.enabled = 0;
    fl_netsim_plan(&f.netsim, &f.run, 1, selected, 4, &plan);
    CHECK(plan.num_received == 4 && plan.seconds == 0.0, "clock off");
    fl_round_plan_free(&plan);
    fedkd_config_free(&f.config);
}

static void check_dropout(void)
{
    int failed = 0, again = 0;
    for (int round = 1; round <= 100; round++)
        for (int client = 0; client < 100; client++) {
            int x = fl_netsim_fails(42, 0.2, round, client);
            failed += x;
            again += x == fl_netsim_fails(42, 0.2, round, client);
            CHECK(!fl_netsim_fails(42, 0.0, round, client), "p = 0 dropped a client");
        }
    CHECK(failed > 1800 && failed < 2200, "p = 0.2: %d of 10000 failed", failed);
    CHECK(again == 10000, "dropout is not a function of (seed, round, client)");
}

static void check_float16(void)
{
    /* Exactly representable values come back as they were. */
    const float exact[] = {0.0f, 1.0f, -2.0f, 0.5f, 65504.0f, -0.099975586f, 0x1p-24f, 0x1p-14f};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        CHECK(fl_half_to_float(fl_float_to_half(exact[i])) == exact[i], "%g changed",
              (double)exact[i]);
    CHECK(fl_float_to_half(1.0f) == 0x3c00 && fl_float_to_half(-2.0f) == 0xc000,
          "half encodings");
    CHECK(fl_half_to_float(fl_float_to_half(1.0e6f)) == 65504.0f, "beyond the range: clamped");
    CHECK(isnan(fl_half_to_float(fl_float_to_half(NAN))), "NaN stays NaN");
    /* Ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10. */
    CHECK(fl_half_to_float(fl_float_to_half(1.0f + 0x1p-11f)) == 1.0f, "tie to even");
    /* Within max(2^-11 |x|, 2^-25) over many magnitudes. */
    fedkd_rng rng = fedkd_rng_stream(1, FEDKD_RNG_TEST, 16, 0);
    int within = 1;
    for (int i = 0; i < 20000; i++) {
        float x = (float)(ldexp(fedkd_rng_uniform(&rng) - 0.5, (int)fedkd_rng_below(&rng, 50) - 34));
        float y = fl_half_to_float(fl_float_to_half(x));
        double bound = fmax(fabs((double)x) * 0x1p-11, 0x1p-25);
        if (!(fabs((double)x - (double)y) <= bound)) {
            within = 0;
            fprintf(stderr, "float16: %.9g -> %.9g\n", (double)x, (double)y);
            break;
        }
    }
    CHECK(within, "float16 error beyond max(2^-11 |x|, 2^-25)");
}

static void check_int8(void)
{
    /* Two chunks of very different size: each has its own scale. */
    size_t n = FL_INT8_CHUNK + 300;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (!x || !y) return;
    fedkd_rng rng = fedkd_rng_stream(1, FEDKD_RNG_TEST, 17, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((fedkd_rng_uniform(&rng) - 0.5) * (i < FL_INT8_CHUNK ? 100.0 : 0.01));
    x[5] = 50.0f; /* the first chunk's largest, sent exactly */
    memcpy(y, x, n * sizeof *x);
    fl_int8_round_trip(y, n);
    for (int chunk = 0; chunk < 2; chunk++) {
        size_t start = (size_t)chunk * FL_INT8_CHUNK, end = chunk ? n : FL_INT8_CHUNK;
        float largest = 0.0f;
        for (size_t i = start; i < end; i++) largest = fmaxf(largest, fabsf(x[i]));
        double bound = (double)largest / 127.0 / 2.0 * (1.0 + 1e-5);
        double worst = 0.0;
        for (size_t i = start; i < end; i++) worst = fmax(worst, fabs((double)x[i] - (double)y[i]));
        CHECK(worst <= bound, "int8 chunk %d: error %g beyond scale / 2 = %g", chunk, worst, bound);
        CHECK(worst > 0.0, "int8 chunk %d came back exact: nothing was quantised", chunk);
    }
    CHECK(y[5] == 50.0f, "the chunk's largest value is sent exactly: %g", (double)y[5]);
    float zeros[3] = {0.0f, 0.0f, 0.0f};
    fl_int8_round_trip(zeros, 3);
    CHECK(zeros[0] == 0.0f && zeros[2] == 0.0f, "an all-zero chunk");
    free(x);
    free(y);
}

static void check_topk_keep(void)
{
    float v[6] = {0.5f, -3.0f, 1.0f, -1.0f, 2.0f, 1.0f}, scratch[6];
    fl_topk_keep(v, 6, 3, scratch);
    /* |-3|, |2|, then the first of the ties at 1 (index 2). */
    const float want[6] = {0.0f, -3.0f, 1.0f, 0.0f, 2.0f, 0.0f};
    CHECK(memcmp(v, want, sizeof v) == 0, "top-3: %g %g %g %g %g %g", (double)v[0], (double)v[1],
          (double)v[2], (double)v[3], (double)v[4], (double)v[5]);
    CHECK(fl_topk_count(0.01, 1000) == 10 && fl_topk_count(0.001, 10) == 1 &&
              fl_topk_count(1.0, 7) == 7 && fl_topk_count(0.3, 10) == 3,
          "top-k counts");
}

/* A client round with only what fl_upload reads. */
static void check_topk_error_feedback(void)
{
    enum { N = 3000 };
    const char *all[] = {"comm.compression=topk", "comm.topk_fraction=1"};
    const char *tenth[] = {"comm.compression=topk", "comm.topk_fraction=0.1"};
    fedkd_config config_all, config_tenth;
    if (load(&config_all, all, 2) || load(&config_tenth, tenth, 2)) return;
    float *after = malloc(N * sizeof(float)), *before = malloc(N * sizeof(float));
    float *residual = calloc(N, sizeof(float));
    int64_t *plain = calloc(N, sizeof(int64_t)), *sparse = calloc(N, sizeof(int64_t));
    if (!after || !before || !residual || !plain || !sparse) return;
    fedkd_rng rng = fedkd_rng_stream(1, FEDKD_RNG_TEST, 18, 0);
    fl_run run = {.config = &config_all};
    fl_client_round c = {.client = 0, .residual = residual};
    double sent_total = 0.0, delta_total = 0.0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            before[i] = (float)fedkd_rng_normal(&rng);
            after[i] = before[i] + (float)(0.01 * fedkd_rng_normal(&rng));
        }
        CHECK(fedkd_fixed_accumulate_delta(plain, after, before, N, 0.37) == FEDKD_OK, "plain");
        c.sum = sparse;
        CHECK(fl_upload(&run, &c, 0, after, before, N, 0.37, FL_SEGMENT_WEIGHTS, 0) == FEDKD_OK,
              "top-k upload: %s", fedkd_error_message());
    }
    CHECK(memcmp(plain, sparse, N * sizeof(int64_t)) == 0,
          "top-k at k = all differs from plain averaging");
    int clean = 1;
    for (int i = 0; i < N; i++) clean &= residual[i] == 0.0f;
    CHECK(clean, "top-k at k = all left a residual");

    /* k = n / 10: each round sends 300 values; what is not sent stays in
     * the residual, so sent + residual = the deltas' sum. */
    run.config = &config_tenth;
    memset(sparse, 0, N * sizeof(int64_t));
    memset(residual, 0, N * sizeof(float));
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            before[i] = 0.0f;
            after[i] = (float)(0.01 * fedkd_rng_normal(&rng));
            delta_total += (double)after[i];
        }
        int64_t *once = calloc(N, sizeof(int64_t));
        c.sum = once;
        CHECK(fl_upload(&run, &c, 0, after, before, N, 1.0, FL_SEGMENT_WEIGHTS, 0) == FEDKD_OK,
              "top-k upload");
        int nonzero = 0;
        for (int i = 0; i < N; i++) {
            nonzero += once[i] != 0;
            sparse[i] += once[i];
        }
        CHECK(nonzero == 300, "round %d sent %d values, expected 300", round, nonzero);
        free(once);
    }
    for (int i = 0; i < N; i++) sent_total += fedkd_fixed_to_double(sparse[i]) + (double)residual[i];
    CHECK_CLOSE(sent_total, delta_total, 1e-6, "sent + residual = the deltas");
    free(after);
    free(before);
    free(residual);
    free(plain);
    free(sparse);
    fedkd_config_free(&config_all);
    fedkd_config_free(&config_tenth);
}

static void check_bytes(void)
{
    /* n = 2500: 10000, 5000, 2500 + 4 * 3, top-10%: 250 x 8. */
    CHECK(fl_segment_bytes(FL_COMPRESS_NONE, 0.1, FL_SEGMENT_WEIGHTS, 2500) == 10000, "none");
    CHECK(fl_segment_bytes(FL_COMPRESS_FLOAT16, 0.1, FL_SEGMENT_WEIGHTS, 2500) == 5000, "float16");
    CHECK(fl_segment_bytes(FL_COMPRESS_INT8, 0.1, FL_SEGMENT_SOFT, 2500) == 2512, "int8");
    CHECK(fl_segment_bytes(FL_COMPRESS_INT8, 0.1, FL_SEGMENT_SOFT, 1024) == 1028, "int8, 1 chunk");
    CHECK(fl_segment_bytes(FL_COMPRESS_TOPK, 0.1, FL_SEGMENT_WEIGHTS, 2500) == 2000, "top-k");
    CHECK(fl_segment_bytes(FL_COMPRESS_TOPK, 0.1, FL_SEGMENT_SOFT, 2500) == 10000,
          "top-k leaves soft labels float32");
    CHECK(fl_segment_bytes(FL_COMPRESS_INT8, 0.1, FL_SEGMENT_EXACT, 7) == 28, "exact");
    /* SCAFFOLD: two weight segments of n; FedNova: n and one float32. */
    const char *topk[] = {"comm.compression=topk", "comm.topk_fraction=0.01"};
    const char *int8[] = {"comm.compression=int8"};
    fedkd_config a, b;
    if (load(&a, topk, 2) || load(&b, int8, 1)) return;
    fl_payload scaffold = {.sent_up = 2 * 2500, .up_weights = 2500, .up_weight_segments = 2};
    fl_payload fednova = {.sent_up = 2501, .up_weights = 2500, .up_weight_segments = 1};
    fl_payload fd = {.sent_up = 10 * 11, .up_soft = 100};
    CHECK(fl_upload_bytes(&a, &scaffold) == 2 * 25 * 8, "scaffold top-k: %llu",
          (unsigned long long)fl_upload_bytes(&a, &scaffold));
    CHECK(fl_upload_bytes(&b, &fednova) == 2512 + 4, "fednova int8");
    CHECK(fl_upload_bytes(&b, &fd) == 100 + 4 + 40, "fd int8");
    CHECK(fl_residual_len(&a, &scaffold) == 5000 && fl_residual_len(&b, &scaffold) == 0,
          "residual lengths");
    fedkd_config_free(&a);
    fedkd_config_free(&b);
}

/* Writes `text` to `path`. */
static void write_text(const char *path, const char *text)
{
    FILE *file = fopen(path, "w");
    if (!file) return;
    fputs(text, file);
    fclose(file);
}

/* A config refused (by the key table, the netsim checks or the trace) with
 * a message naming `want`. */
static void expect_refused(const char *want, const char *a, const char *b, const char *c)
{
    const char *overrides[3];
    int n = 0;
    const char *given[] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (given[i]) overrides[n++] = given[i];
    fedkd_config config;
    fedkd_status status = fedkd_config_load(&config, NULL, overrides, n);
    if (!status) {
        const fedkd_algorithm *algorithm = NULL;
        status = fedkd_algorithm_find(config.algorithm, &algorithm);
        if (!status) status = fl_netsim_check_config(&config, algorithm->global_model);
        fl_netsim netsim;
        if (!status) status = fl_netsim_create(&netsim, &config, 3);
        if (!status) fl_netsim_free(&netsim);
        fedkd_config_free(&config);
    }
    CHECK(status != FEDKD_OK, "%s %s %s: accepted", a, b ? b : "", c ? c : "");
    if (status) {
        const char *message = fedkd_error_message();
        CHECK(strstr(message, want) != NULL && !strchr(message, '\n'),
              "the message does not name %s on one line: %s", want, message);
    }
    fedkd_error_clear();
}

static void check_bad_input(void)
{
    const char *short_trace = "/tmp/fedkd-test-netsim-short.csv";
    const char *missing = "/tmp/fedkd-test-netsim-missing.csv";
    const char *words = "/tmp/fedkd-test-netsim-words.csv";
    write_text(short_trace, "client,speed,up,down\n0,100,1,1\n1,100,1\n2,1,1,1\n");
    write_text(missing, "0,100,1,1\n1,100,1,1,0.5\n");
    write_text(words, "0,100,1,1\n1,fast,1,1\n2,1,1,1\n");
    expect_refused("network.speed.distribution", "network.speed.distribution=pareto", NULL, NULL);
    expect_refused("network.up.value", "network.up.value=-1", NULL, NULL);
    expect_refused("network.down.low", "network.down.low=0", NULL, NULL);
    expect_refused("network.latency.value", "network.latency.value=-0.1", NULL, NULL);
    expect_refused("network.speed.low", "network.speed.distribution=uniform",
                   "network.speed.low=50", "network.speed.high=10");
    expect_refused("/tmp/fedkd-test-netsim-nothere.csv", "network.enabled=true",
                   "network.trace=/tmp/fedkd-test-netsim-nothere.csv", NULL);
    expect_refused("fedkd-test-netsim-short.csv:3", "network.enabled=true",
                   "network.trace=/tmp/fedkd-test-netsim-short.csv", NULL);
    expect_refused("no row for client 2", "network.enabled=true",
                   "network.trace=/tmp/fedkd-test-netsim-missing.csv", NULL);
    expect_refused("fedkd-test-netsim-words.csv:2", "network.enabled=true",
                   "network.trace=/tmp/fedkd-test-netsim-words.csv", NULL);
    expect_refused("round.deadline_seconds", "network.enabled=true", "round.deadline_seconds=-3",
                   NULL);
    expect_refused("round.deadline_seconds", "round.deadline_seconds=2", NULL, NULL);
    expect_refused("round.dropout", "round.dropout=1", NULL, NULL);
    expect_refused("comm.topk_fraction", "comm.compression=topk", "comm.topk_fraction=0", NULL);
    expect_refused("comm.topk_fraction", "comm.compression=topk", "comm.topk_fraction=1.5", NULL);
    expect_refused("comm.compression", "comm.compression=zip", NULL, NULL);
    expect_refused("comm.compression", "comm.compression=topk", "algorithm=fedmd", NULL);
    expect_refused("comm.compression", "comm.compression=int8", "fedbn=true", NULL);
    remove(short_trace);
    remove(missing);
    remove(words);
}

static const char *common[] = {
    "mode=federated", "data.name=synthetic", "data.synthetic_train=600",
    "data.synthetic_test=200", "data.synthetic_separation=0.8",
    "model=[{\"type\":\"dense\",\"units\":16},{\"type\":\"relu\"},{\"type\":\"dense\",\"units\":4}]",
    "local.batch_size=32", "local.lr=0.05", "clients.count=4", "clients.per_round=1",
    "partition.min_size=5", "checkpoint.every=0", "rounds=3", "run.dir=/tmp/fedkd-test-netsim",
};

static int run(fedkd_run_result *result, const char *a, const char *b, const char *c)
{
    const char *overrides[32];
    int n = 0;
    for (size_t i = 0; i < sizeof common / sizeof *common; i++) overrides[n++] = common[i];
    const char *extra[] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (extra[i]) overrides[n++] = extra[i];
    fedkd_config config;
    memset(result, 0, sizeof *result);
    if (load(&config, overrides, n)) return 1;
    fedkd_run_options options = {.start_over = 1};
    fedkd_status status = fedkd_run_with_options(&config, MPI_COMM_WORLD, &options, result);
    CHECK(status == FEDKD_OK, "%s run: %s", config.algorithm, fedkd_error_message());
    fedkd_config_free(&config);
    return status != FEDKD_OK;
}

static void check_federations(void)
{
    const char *algorithms[] = {"algorithm=fedavg", "algorithm=scaffold"};
    for (int i = 0; i < 2; i++) {
        fedkd_run_result plain, sparse, tenth;
        if (run(&plain, algorithms[i], NULL, NULL) ||
            run(&sparse, algorithms[i], "comm.compression=topk", "comm.topk_fraction=1") ||
            run(&tenth, algorithms[i], "comm.compression=topk", "comm.topk_fraction=0.1"))
            return;
        size_t n = plain.num_params;
        int segments = i == 0 ? 1 : 2;
        CHECK(plain.final_params && sparse.final_params && sparse.num_params == n &&
                  memcmp(plain.final_params, sparse.final_params, n * sizeof(float)) == 0,
              "%s: top-k at fraction 1 differs from no compression", algorithms[i]);
        CHECK(tenth.final_params &&
                  memcmp(plain.final_params, tenth.final_params, n * sizeof(float)) != 0,
              "%s: top-k at 0.1 changed nothing", algorithms[i]);
        /* 3 rounds x 4 clients x segments x (4 n, 8 n, 8 ceil(n / 10)). */
        uint64_t uploads = 3 * 4 * (uint64_t)segments;
        CHECK(plain.bytes_up_total == uploads * 4 * n, "%s: plain bytes_up %llu", algorithms[i],
              (unsigned long long)plain.bytes_up_total);
        CHECK(sparse.bytes_up_total == uploads * 8 * n, "%s: top-k 1 bytes_up %llu",
              algorithms[i], (unsigned long long)sparse.bytes_up_total);
        CHECK(tenth.bytes_up_total == uploads * 8 * fl_topk_count(0.1, n),
              "%s: top-k 0.1 bytes_up %llu", algorithms[i],
              (unsigned long long)tenth.bytes_up_total);
        free(plain.final_params);
        free(sparse.final_params);
        free(tenth.final_params);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    fedkd_log_set_quiet(1);
    check_clock_by_hand();
    check_plan_and_deadline();
    check_dropout();
    check_float16();
    check_int8();
    check_topk_keep();
    check_topk_error_feedback();
    check_bytes();
    check_bad_input();
    check_federations();
    int code = test_finish("test_netsim");
    MPI_Finalize();
    return code;
}
