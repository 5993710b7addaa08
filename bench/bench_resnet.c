/* fedkd-bench-resnet: resnet8 (or resnet20) training speed on synthetic
 * data of CIFAR-10's shape (3 x 32 x 32, 10 classes), so that it runs
 * anywhere: samples per second and GFLOP/s of fedkd_train_local, against
 * the rate of fedkd_sgemm on a square 512^3 product timed in the same
 * process just before and just after training.
 *
 * FLOPs counted: 3 x 2 x the forward multiply-adds per sample (forward,
 * input gradient, weight gradient of every conv and dense layer; the first
 * conv computes no input gradient, so this overstates the work by its
 * share, 1.2% of resnet8's). Normalisation, ReLU, pooling and the shortcut
 * additions are not counted: they are the engine's overhead here.
 *
 *   fedkd-bench-resnet [--model resnet8] [--samples 512] [--batch 32] [--epochs 1]
 * Prints one line per measurement and a last line "resnet: ..." with the
 * figures. Exit status 1 on an error only (no targets). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fedkd/core/core.h"
#include "fedkd/data/data.h"
#include "fedkd/nn/nn.h"
#include "fedkd/train/train.h"

static double cpu_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0.0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GFLOP/s of fedkd_sgemm at n^3, wall and CPU time, over >= 1 s. */
static void sgemm_rate(int n, double *wall_rate, double *cpu_rate)
{
    size_t count = (size_t)n * (size_t)n;
    float *a = fedkd_alloc(count * sizeof(float)), *b = fedkd_alloc(count * sizeof(float));
    float *c = fedkd_alloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double wall0 = fedkd_time_now(), cpu0 = cpu_now();
    long calls = 0;
    do {
        fedkd_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        calls++;
    } while (fedkd_time_now() - wall0 < 1.0);
    double flops = 2.0 * (double)n * (double)n * (double)n * (double)calls;
    *wall_rate = flops / (fedkd_time_now() - wall0) * 1e-9;
    *cpu_rate = flops / (cpu_now() - cpu0) * 1e-9;
    fedkd_free(a);
    fedkd_free(b);
    fedkd_free(c);
}

int main(int argc, char **argv)
{
    const char *name = "resnet8";
    int samples = 512, batch = 32, epochs = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--model") == 0) name = argv[i + 1];
        else if (strcmp(argv[i], "--samples") == 0) samples = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0) batch = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--epochs") == 0) epochs = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "fedkd-bench-resnet: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (samples < 2 || batch < 2 || epochs < 1) {
        fprintf(stderr, "fedkd-bench-resnet: expected --samples >= 2, --batch >= 2, --epochs >= 1\n");
        return 1;
    }
    fedkd_synthetic_settings synthetic = fedkd_synthetic_default_settings();
    synthetic.count = (size_t)samples;
    synthetic.shape = (fedkd_shape){3, 32, 32};
    synthetic.num_classes = 10;
    fedkd_dataset *data = NULL;
    fedkd_model_spec spec;
    fedkd_model *model = NULL;
    fedkd_optimizer *optimizer = NULL;
    fedkd_status status = fedkd_synthetic_generate(&data, &synthetic);
    if (!status) status = fedkd_model_spec_preset(&spec, name, synthetic.shape, 10);
    if (!status) status = fedkd_model_create(&model, &spec, batch);
    fedkd_optimizer_settings opt = fedkd_optimizer_default_settings();
    opt.lr = 0.05f;
    opt.momentum = 0.9f;
    if (!status) status = fedkd_optimizer_create(&optimizer, &opt, model->num_params);
    if (status) {
        fprintf(stderr, "fedkd-bench-resnet: %s\n", fedkd_error_message());
        return 1;
    }
    fedkd_model_init_params(model, 1, 0);

    double sgemm_wall_before, sgemm_cpu_before, sgemm_wall_after, sgemm_cpu_after;
    sgemm_rate(512, &sgemm_wall_before, &sgemm_cpu_before);
    fedkd_train_settings train = fedkd_train_default_settings();
    train.epochs = epochs;
    train.batch_size = batch;
    train.seed = 1;
    fedkd_train_stats stats;
    double cpu0 = cpu_now();
    status = fedkd_train_local(model, optimizer, data, &train, &stats);
    double cpu_seconds = cpu_now() - cpu0;
    sgemm_rate(512, &sgemm_wall_after, &sgemm_cpu_after);
    if (status) {
        fprintf(stderr, "fedkd-bench-resnet: %s\n", fedkd_error_message());
        return 1;
    }
    double macs = fedkd_model_forward_macs(model);
    double flops = 3.0 * 2.0 * macs * (double)stats.samples;
    double wall_rate = flops / stats.seconds * 1e-9, cpu_rate = flops / cpu_seconds * 1e-9;
    double sgemm_wall = 0.5 * (sgemm_wall_before + sgemm_wall_after);
    double sgemm_cpu = 0.5 * (sgemm_cpu_before + sgemm_cpu_after);
    printf("model %s: %zu parameters, %.2f M forward MACs per sample\n", name, model->num_params,
           macs * 1e-6);
    printf("sgemm 512^3: %.2f / %.2f GFLOP/s (wall) before / after, %.2f / %.2f (CPU)\n",
           sgemm_wall_before, sgemm_wall_after, sgemm_cpu_before, sgemm_cpu_after);
    printf("training: %ld samples in %ld steps, %.2f s wall, %.2f s CPU, loss %.3f -> %.3f\n",
           stats.samples, stats.steps, stats.seconds, cpu_seconds, stats.first_loss,
           stats.mean_loss);
    printf("resnet: %s batch %d: %.1f samples/s (wall), %.1f samples/s (CPU); %.2f GFLOP/s "
           "(wall) = %.0f%% of sgemm, %.2f GFLOP/s (CPU) = %.0f%% of sgemm\n",
           name, batch, (double)stats.samples / stats.seconds,
           (double)stats.samples / cpu_seconds, wall_rate, 100.0 * wall_rate / sgemm_wall,
           cpu_rate, 100.0 * cpu_rate / sgemm_cpu);
    fedkd_optimizer_destroy(&optimizer);
    fedkd_model_destroy(&model);
    fedkd_dataset_destroy(&data);
    return 0;
}
