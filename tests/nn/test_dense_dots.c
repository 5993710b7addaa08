/* The dense layer's forward product through dot products
 * (fedkd_nn_dense_dots, src/nn/dense_dots.c) against this file's own sums
 * in the order nn_private.h documents (bit for bit), against
 * double-precision sums (guarding that loop), and for its promises: every
 * output written and nothing beside it, a sample's outputs the same in any
 * batch and at any place in it, the model's forward pass taking the
 * kernel where fedkd_nn_dense_dots_vector says it runs, and a batch read in
 * place from its rows (fedkd_model_forward_rows) giving the bits of the
 * same batch gathered. Sizes hit every
 * remainder of the kernel's tiles (4 rows by 4 units, 16 inputs a vector);
 * the kernel is checked on every shape, also those the dense layer leaves
 * to the BLAS. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/rng.h"
#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"
#include "test_util.h"

static fedkd_rng rng;

static float *random_floats(size_t count)
{
    float *x = malloc((count + 1) * sizeof *x);
    for (size_t i = 0; i < count; i++) x[i] = (float)(2.0 * fedkd_rng_uniform(&rng) - 1.0);
    return x;
}

/* Output (n, o) as documented: 16 lanes of fused multiply-adds from 0, lane
 * l taking i = l, l + 16, ... (the lanes past the last in % 16 a final 0 *
 * 0), the lanes ((l0 + l2) + (l1 + l3)) per block of 4, the blocks (b0 +
 * b1) + (b2 + b3), then the bias. */
static float documented_sum(const float *x, const float *w, float bias, int in)
{
    float lanes[16];
    int chunks = (in + 15) / 16;
    for (int l = 0; l < 16; l++) {
        float acc = 0.0f;
        for (int c = 0; c < chunks; c++) {
            int i = 16 * c + l;
            acc = i < in ? fmaf(x[i], w[i], acc) : fmaf(0.0f, 0.0f, acc);
        }
        lanes[l] = acc;
    }
    float blocks[4];
    for (int g = 0; g < 4; g++)
        blocks[g] = (lanes[4 * g] + lanes[4 * g + 2]) + (lanes[4 * g + 1] + lanes[4 * g + 3]);
    return ((blocks[0] + blocks[1]) + (blocks[2] + blocks[3])) + bias;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* One product through the plain loop and, where it runs, the vector
 * kernel; output rows are out floats apart with a guard after the last. */
static void check_shape(int batch, int out, int in)
{
    float *x = random_floats((size_t)batch * (size_t)in);
    float *w = random_floats((size_t)out * (size_t)in);
    float *bias = random_floats((size_t)out);
    size_t outputs = (size_t)batch * (size_t)out;
    float *plain = malloc((outputs + 16) * sizeof *plain);
    float *vector = malloc((outputs + 16) * sizeof *vector);
    for (size_t k = 0; k < outputs + 16; k++) plain[k] = vector[k] = NAN;
    fedkd_nn_dense_dots(x, w, bias, plain, batch, out, in, 1);
    int vector_runs = fedkd_nn_dense_dots_avx512();
    if (vector_runs) fedkd_nn_dense_dots(x, w, bias, vector, batch, out, in, 0);
    int documented = 0, close = 0, kernels = 0, guard = 0;
    for (int n = 0; n < batch; n++)
        for (int o = 0; o < out; o++) {
            const float *xr = x + (size_t)n * (size_t)in, *wr = w + (size_t)o * (size_t)in;
            size_t at = (size_t)n * (size_t)out + (size_t)o;
            double reference = bias[o], magnitude = fabs(bias[o]);
            for (int i = 0; i < in; i++) {
                reference += (double)xr[i] * (double)wr[i];
                magnitude += fabs((double)xr[i] * (double)wr[i]);
            }
            documented += !same_bits(plain[at], documented_sum(xr, wr, bias[o], in));
            close += !(fabs((double)plain[at] - reference) <= 1e-6 * fmax(1.0, magnitude));
            kernels += vector_runs && !same_bits(vector[at], plain[at]);
        }
    for (size_t k = outputs; k < outputs + 16; k++)
        guard += !isnan(plain[k]) || (vector_runs && !isnan(vector[k]));
    CHECK(documented == 0, "batch %d out %d in %d: %d outputs of the plain loop differ from the "
          "documented order", batch, out, in, documented);
    CHECK(close == 0, "batch %d out %d in %d: %d outputs differ from the double sum", batch, out,
          in, close);
    CHECK(kernels == 0, "batch %d out %d in %d: %d outputs of the vector kernel differ from the "
          "plain loop", batch, out, in, kernels);
    CHECK(guard == 0, "batch %d out %d in %d: wrote %d floats past the output", batch, out, in,
          guard);

    /* Row n alone gives row n's bits, and so does the batch reversed. */
    if (vector_runs) {
        float *reversed_x = malloc(((size_t)batch * (size_t)in + 1) * sizeof *reversed_x);
        float *reversed_y = malloc((outputs + 1) * sizeof *reversed_y);
        float *alone = malloc(((size_t)out + 1) * sizeof *alone);
        for (int n = 0; n < batch; n++)
            memcpy(reversed_x + (size_t)(batch - 1 - n) * (size_t)in, x + (size_t)n * (size_t)in,
                   (size_t)in * sizeof *x);
        fedkd_nn_dense_dots(reversed_x, w, bias, reversed_y, batch, out, in, 0);
        int moved = 0, single = 0;
        for (int n = 0; n < batch; n++) {
            fedkd_nn_dense_dots(x + (size_t)n * (size_t)in, w, bias, alone, 1, out, in, 0);
            for (int o = 0; o < out; o++) {
                size_t at = (size_t)n * (size_t)out + (size_t)o;
                moved += !same_bits(reversed_y[(size_t)(batch - 1 - n) * (size_t)out + (size_t)o],
                                    vector[at]);
                single += !same_bits(alone[o], vector[at]);
            }
        }
        CHECK(moved == 0, "batch %d out %d in %d: %d outputs change when the batch is reversed",
              batch, out, in, moved);
        CHECK(single == 0, "batch %d out %d in %d: %d outputs change when their row is alone",
              batch, out, in, single);
        free(reversed_x);
        free(reversed_y);
        free(alone);
    }
    free(x);
    free(w);
    free(bias);
    free(plain);
    free(vector);
}

/* A model spec of `layers` layers (kinds and units) on in inputs. */
static fedkd_model_spec spec_of(const char *name, int in, int classes, int layers,
                                const char *const *kinds, const int *units)
{
    fedkd_model_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "%s", name);
    spec.input = (fedkd_shape){1, 1, in};
    spec.num_classes = classes;
    spec.num_layers = layers;
    for (int l = 0; l < layers; l++) {
        snprintf(spec.layers[l].kind, sizeof spec.layers[l].kind, "%s", kinds[l]);
        spec.layers[l].units = units[l];
    }
    return spec;
}

/* A model of one dense layer (in inputs, out units, out classes): its
 * forward pass gives the kernel's bits where the kernel runs. */
static void check_model(int batch, int out, int in)
{
    const char *kinds[] = {"dense"};
    fedkd_model_spec spec = spec_of("dots", in, out, 1, kinds, &out);
    fedkd_model *model = NULL;
    CHECK(fedkd_model_create(&model, &spec, batch) == FEDKD_OK, "model of %d x %d", out, in);
    if (!model) return;
    fedkd_model_init_params(model, 5, 0);
    float *x = random_floats((size_t)batch * (size_t)in);
    const float *logits = fedkd_model_forward(model, x, batch);
    float *plain = malloc(((size_t)batch * (size_t)out + 1) * sizeof *plain);
    const float *w = model->params, *bias = model->params + (size_t)out * (size_t)in;
    fedkd_nn_dense_dots(x, w, bias, plain, batch, out, in, 1);
    int differ = 0;
    for (size_t k = 0; k < (size_t)batch * (size_t)out; k++)
        differ += !same_bits(logits[k], plain[k]);
    if (fedkd_nn_dense_dots_vector(batch, out, in))
        CHECK(differ == 0, "forward batch %d out %d in %d: %d outputs are not the kernel's", batch,
              out, in, differ);
    else /* the BLAS: close, whatever its order */
        for (size_t k = 0; k < (size_t)batch * (size_t)out; k++)
            CHECK_CLOSE(logits[k], plain[k], 1e-5, "forward through the BLAS");
    fedkd_model_destroy(&model);
    free(x);
    free(plain);
}

/* fedkd_model_forward_rows against copying the rows into the model's input
 * and fedkd_model_forward: the same logits bit for bit, and the input
 * holding the rows afterwards (the backward pass reads it). A flatten then
 * a dense layer of `units` (the rows read in place where the kernel takes
 * that shape, else gathered), a relu and a dense layer of 10; rows picked
 * out of order from a larger set, some twice. */
static void check_rows(int batch, int units, int in)
{
    const char *kinds[] = {"flatten", "dense", "relu", "dense"};
    const int layer_units[] = {0, units, 0, 10};
    fedkd_model_spec spec = spec_of("rows", in, 10, 4, kinds, layer_units);
    fedkd_model *model[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        CHECK(fedkd_model_create(&model[k], &spec, batch) == FEDKD_OK, "rows model %d", units);
        if (!model[k]) return;
        fedkd_model_init_params(model[k], 9, 0);
    }
    int set = 3 * batch + 5;
    float *data = random_floats((size_t)set * (size_t)in);
    const float **rows = malloc((size_t)batch * sizeof *rows);
    float *gathered = malloc(((size_t)batch * (size_t)in + 1) * sizeof *gathered);
    for (int n = 0; n < batch; n++) {
        rows[n] = data + (size_t)((n * 7 + 3) % set / (n % 5 == 4 ? 2 : 1)) * (size_t)in;
        memcpy(gathered + (size_t)n * (size_t)in, rows[n], (size_t)in * sizeof *gathered);
    }
    memset(fedkd_model_input(model[1]), 0xff, (size_t)batch * (size_t)in * sizeof(float));
    const float *expected = fedkd_model_forward(model[0], gathered, batch);
    const float *got = fedkd_model_forward_rows(model[1], rows, batch);
    int logits = 0, input = 0;
    for (size_t k = 0; k < (size_t)batch * 10; k++) logits += !same_bits(got[k], expected[k]);
    for (size_t k = 0; k < (size_t)batch * (size_t)in; k++)
        input += !same_bits(fedkd_model_input(model[1])[k], gathered[k]);
    CHECK(logits == 0, "rows batch %d units %d in %d (%s): %d logits differ from the gathered "
          "batch's", batch, units, in,
          fedkd_nn_dense_dots_vector(batch, units, in) ? "in place" : "gathered", logits);
    CHECK(input == 0, "rows batch %d units %d in %d: %d floats of the model's input are not the "
          "rows", batch, units, in, input);
    for (int k = 0; k < 2; k++) fedkd_model_destroy(&model[k]);
    free(data);
    free(rows);
    free(gathered);
}

int main(void)
{
    rng = fedkd_rng_stream(17, FEDKD_RNG_TEST, 0, 0);
    const int batches[] = {1, 3, 4, 5, 7, 9};
    const int outs[] = {16, 17, 18, 19, 20};
    const int ins[] = {384, 391, 400, 409, 415};
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++)
        for (size_t o = 0; o < sizeof outs / sizeof *outs; o++)
            check_shape(batches[b], outs[o], ins[(b + o) % (sizeof ins / sizeof *ins)]);
    check_shape(64, 200, 784); /* the mlp's first layer */
    check_shape(64, 120, 400); /* the cnn's */
    check_shape(128, 33, 777);
    /* the plain loop also serves shapes the kernel leaves to the BLAS */
    check_shape(3, 5, 17);
    check_shape(2, 1, 1);

    /* Where the dense layer takes the kernel: AVX-512 and the training
     * shapes it beats the BLAS on. */
    int avx512 = fedkd_nn_dense_dots_avx512();
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    CHECK(avx512 == !!__builtin_cpu_supports("avx512f"), "the kernel runs exactly with AVX-512");
#endif
    CHECK(fedkd_nn_dense_dots_vector(64, 200, 784) == avx512, "the mlp's first layer");
    if (avx512) {
        CHECK(fedkd_nn_dense_dots_vector(128, 32, 64), "128 rows, 32 units, 64 inputs");
        CHECK(fedkd_nn_dense_dots_vector(1000, 32, 384), "1000 rows, 32 units, 384 inputs");
        CHECK(!fedkd_nn_dense_dots_vector(129, 200, 383), "129 rows of 383 inputs go to the BLAS");
        CHECK(!fedkd_nn_dense_dots_vector(64, 31, 784), "31 units go to the BLAS");
        CHECK(!fedkd_nn_dense_dots_vector(64, 200, 63), "63 inputs go to the BLAS");
    }
    check_model(64, 200, 784);
    check_model(5, 33, 391);
    check_model(1000, 40, 400); /* many rows, many inputs */
    check_model(200, 40, 200);  /* many rows, few inputs: the BLAS */
    check_model(8, 10, 784);    /* few units: the BLAS */
    check_rows(64, 200, 784);   /* the mlp */
    check_rows(7, 33, 391);     /* tails: 3 rows, 1 unit, 7 inputs */
    check_rows(60, 200, 100);
    check_rows(1, 40, 64);
    check_rows(9, 20, 784);     /* the kernel does not take it: gathered */
    return test_finish("test_dense_dots");
}
