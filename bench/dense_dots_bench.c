/* A dense layer's forward product through the AVX-512 dot-product kernel
 * (src/nn/dense_dots.c) against the BLAS as the dense layer calls it (the
 * bias copied into each row, then sgemm with beta 1), alternated in one
 * process on random data, for each shape given as BATCHxUNITSxINPUTS.
 * Prints the median time of each over the rounds, their ratio and whether
 * the dense layer takes the kernel at that shape; checks that the two
 * agree (relative 1e-5).
 *
 *   fedkd-bench-dense-dots [--rounds 15] [SHAPE ...]
 *   fedkd-bench-dense-dots 64x200x784 64x200x200
 *
 * Run it pinned to one core with one BLAS thread (bench/README.md). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fedkd/core/core.h"
#include "fedkd/core/rng.h"
#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void blas_forward(const float *x, const float *w, const float *bias, float *y, int batch,
                         int out, int in)
{
    for (int n = 0; n < batch; n++) memcpy(y + (size_t)n * (size_t)out, bias, (size_t)out * 4);
    fedkd_sgemm(0, 1, batch, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

/* Seconds per call of one form, over `reps` calls. */
static double time_form(int kernel, const float *x, const float *w, const float *bias, float *y,
                        int batch, int out, int in, int reps)
{
    double start = seconds();
    for (int r = 0; r < reps; r++) {
        if (kernel)
            fedkd_nn_dense_dots(x, w, bias, y, batch, out, in, 0);
        else
            blas_forward(x, w, bias, y, batch, out, in);
    }
    return (seconds() - start) / reps;
}

static int bench_shape(const char *shape, int rounds, fedkd_rng *rng)
{
    int batch, out, in;
    char tail;
    if (sscanf(shape, "%dx%dx%d%c", &batch, &out, &in, &tail) != 3 || batch < 1 || out < 1 ||
        in < 1 || batch > 100000 || out > 100000 || in > 100000) {
        fprintf(stderr, "fedkd-bench-dense-dots: shape `%s`: expected BATCHxUNITSxINPUTS, each "
                        "1 - 100000\n", shape);
        return 2;
    }
    size_t nx = (size_t)batch * (size_t)in, nw = (size_t)out * (size_t)in;
    size_t ny = (size_t)batch * (size_t)out;
    /* 64-byte aligned, as the model's buffers are (fedkd_alloc) */
    float *x = fedkd_alloc(nx * sizeof *x), *w = fedkd_alloc(nw * sizeof *w);
    float *bias = fedkd_alloc((size_t)out * sizeof *bias);
    float *y[2] = {fedkd_alloc(ny * sizeof(float)), fedkd_alloc(ny * sizeof(float))};
    double *t[2] = {malloc((size_t)rounds * sizeof(double)),
                    malloc((size_t)rounds * sizeof(double))};
    if (!x || !w || !bias || !y[0] || !y[1] || !t[0] || !t[1]) {
        fprintf(stderr, "fedkd-bench-dense-dots: out of memory for %s\n", shape);
        return 1;
    }
    for (size_t k = 0; k < nx; k++) x[k] = (float)fedkd_rng_uniform(rng);
    for (size_t k = 0; k < nw; k++) w[k] = (float)(fedkd_rng_uniform(rng) - 0.5) * 0.1f;
    for (int k = 0; k < out; k++) bias[k] = (float)(fedkd_rng_uniform(rng) - 0.5);
    /* about 20 ms per timing at 150 GFLOP/s */
    double flops = 2.0 * (double)batch * (double)out * (double)in;
    int reps = (int)fmax(1.0, fmin(100000.0, 0.02 * 150e9 / flops));
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++) {
            int form = (r + k) % 2; /* alternate which goes first */
            t[form][r] = time_form(form, x, w, bias, y[form], batch, out, in, reps);
        }
    int differ = 0;
    for (size_t k = 0; k < ny; k++)
        differ += !(fabs((double)y[0][k] - (double)y[1][k]) <=
                    1e-5 * fmax(1.0, fabs((double)y[0][k])));
    double blas = median(t[0], rounds), kernel = median(t[1], rounds);
    printf("%-14s BLAS %9.1f us %6.1f GFLOP/s | kernel %9.1f us %6.1f GFLOP/s | kernel / BLAS "
           "%.3f | dense layer takes the kernel: %s\n",
           shape, blas * 1e6, flops / blas * 1e-9, kernel * 1e6, flops / kernel * 1e-9,
           kernel / blas, fedkd_nn_dense_dots_vector(batch, out, in) ? "yes" : "no");
    if (differ) fprintf(stderr, "fedkd-bench-dense-dots: %s: %d outputs differ\n", shape, differ);
    fedkd_free(x);
    fedkd_free(w);
    fedkd_free(bias);
    fedkd_free(y[0]);
    fedkd_free(y[1]);
    free(t[0]);
    free(t[1]);
    return differ ? 1 : 0;
}

int main(int argc, char **argv)
{
    int rounds = 15, first = 1;
    if (argc > 2 && strcmp(argv[1], "--rounds") == 0) {
        char *end = NULL;
        long r = strtol(argv[2], &end, 10);
        if (*end || r < 1 || r > 1000) {
            fprintf(stderr, "fedkd-bench-dense-dots: --rounds `%s`: expected 1 - 1000\n", argv[2]);
            return 2;
        }
        rounds = (int)r;
        first = 3;
    }
    if (!fedkd_nn_dense_dots_avx512()) {
        fprintf(stderr, "fedkd-bench-dense-dots: this CPU (or build) has no AVX-512 kernel\n");
        return 1;
    }
    static const char *defaults[] = {"64x200x784", "60x200x784", "64x120x400", "64x200x384",
                                     "64x120x256", "64x200x200", "64x10x784", "1000x200x784"};
    fedkd_rng rng = fedkd_rng_stream(3, FEDKD_RNG_TEST, 0, 0);
    printf("OpenBLAS kernels: %s; %d rounds, median per call\n", fedkd_sgemm_core(), rounds);
    int status = 0;
    if (first >= argc) {
        for (size_t k = 0; k < sizeof defaults / sizeof *defaults; k++)
            status |= bench_shape(defaults[k], rounds, &rng);
    } else {
        for (int k = first; k < argc; k++) status |= bench_shape(argv[k], rounds, &rng);
    }
    return status;
}
