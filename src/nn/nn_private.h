/* Internals shared by the files of the nn layer (not part of the public API). */
#ifndef FEDKD_NN_PRIVATE_H
#define FEDKD_NN_PRIVATE_H

#include <stddef.h>

#include "fedkd/nn/nn.h"

/* Kernels compiled for AVX-512, AVX2 and baseline x86-64, picked at run
 * time. Only for code whose results do not depend on the vector width: no
 * sum is reassociated and the build keeps -ffp-contract=off, so every clone
 * computes the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FEDKD_NN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FEDKD_NN_CLONES
#endif

extern const fedkd_layer_kind fedkd_layer_kind_dense;
extern const fedkd_layer_kind fedkd_layer_kind_conv2d;
extern const fedkd_layer_kind fedkd_layer_kind_maxpool;
extern const fedkd_layer_kind fedkd_layer_kind_relu;
extern const fedkd_layer_kind fedkd_layer_kind_flatten;
extern const fedkd_layer_kind fedkd_layer_kind_avgpool;
extern const fedkd_layer_kind fedkd_layer_kind_batchnorm;
extern const fedkd_layer_kind fedkd_layer_kind_groupnorm;
extern const fedkd_layer_kind fedkd_layer_kind_residual;

/* A batchnorm's initial parameters: gamma 1, beta 0, running mean 0,
 * running variance 1 (params holds 4 * channels floats). */
void fedkd_nn_batchnorm_init(size_t channels, float *params);
/* A normalisation layer's epsilon: the spec's, or the default 1e-5. */
float fedkd_nn_norm_epsilon(const fedkd_layer_spec *spec);

/* Geometry of a conv2d layer, derived from its spec and input shape. */
typedef struct fedkd_conv2d_geometry {
    int in_channels, in_height, in_width;
    int filters, out_height, out_width;
    int kernel, stride, padding;
} fedkd_conv2d_geometry;

fedkd_conv2d_geometry fedkd_conv2d_geometry_of(const fedkd_layer *layer);

/* A sample zero padded by `padding` on every side, (in_channels, in_h + 2 *
 * padding, in_w + 2 * padding), and `kernel` floats of slack after it:
 * fedkd_conv2d_padded_floats floats. fedkd_conv2d_zero_border zeroes the
 * border and the slack, once per call; fedkd_conv2d_pad_sample then writes
 * each sample's interior, leaving them as they are. */
size_t fedkd_conv2d_padded_floats(const fedkd_conv2d_geometry *g);
void fedkd_conv2d_zero_border(const fedkd_conv2d_geometry *g, float *image);
void fedkd_conv2d_pad_sample(const fedkd_conv2d_geometry *g, const float *sample, float *image);

/* The window of a maxpool or avgpool layer (square kernel, stride 0 meaning
 * the kernel, no padding, floor mode): checks it against the input and sets
 * out_shape and num_params. kernel_hint follows "expected kernel >= 1" in the
 * message (avgpool: " (or global: true)"). */
fedkd_status fedkd_nn_pool_window(fedkd_layer *layer, const char *kernel_hint);

/* out[i] = max(in[i], 0) with NaN and -0 going to +0, for i < count; out
 * may be in (the relu layer, and the relu fused into a maxpool in place). */
void fedkd_nn_relu(const float *in, float *out, size_t count);

/* A dense layer's bias gradient: adds the batch's rows of d_output (batch,
 * out) into d_bias, in batch order. */
void fedkd_nn_dense_bias_grad(const float *d_output, int batch, int out, float *d_bias);

/* SGD's arithmetic on one parameter p with its summed gradient g: weight
 * decay, momentum (a fresh velocity, the first since a reset, is written
 * without being read: 0 + g), Nesterov or not; returns the stepped
 * parameter. Every scalar SGD path (the optimizer's passes, in place and
 * out of place, and the fused first-layer step) goes through it, so that
 * their bits cannot drift apart; the fused step's AVX-512 lanes
 * (dense_sgd.c) repeat it operation for operation (test_optimizer). */
static inline __attribute__((always_inline)) float
fedkd_nn_sgd_one(float g, float p, float *velocity, float lr, float momentum, float decay,
                 int nesterov, int fresh)
{
    g = g + decay * p;
    float v = (fresh ? 0.0f : momentum * *velocity) + g;
    *velocity = v;
    return p - (nesterov ? lr * (g + momentum * v) : lr * v);
}

/* Whether fedkd_optimizer_backward_step fuses (tests set it; read once per
 * step, no environment lookup): AUTO where the vector kernel runs, PLAIN
 * on any dense layer through the one-weight-at-a-time loop, OFF never. */
enum { FEDKD_DENSE_SGD_AUTO, FEDKD_DENSE_SGD_PLAIN, FEDKD_DENSE_SGD_OFF };
extern int fedkd_nn_dense_sgd_mode;

/* SGD's settings for fedkd_nn_dense_weight_sgd. fresh: the first step
 * after a reset (the velocity written, not read). plain_only keeps to the
 * one-weight-at-a-time loop, which gives the same bits as the vector
 * kernel. */
typedef struct fedkd_dense_sgd {
    float lr, momentum, decay;
    int nesterov, fresh, plain_only;
} fedkd_dense_sgd;

/* A dense layer's weight gradient, d_output^T input over the batch, and
 * SGD's step of those weights with it, without the gradient ever reaching
 * memory: the bits of fedkd_nn_dense_weight_grad into zeroed gradients
 * followed by the optimizer's pass. The weights are read from source and
 * written to weights (the same array, or, out of place, arrays that do not
 * overlap); source, weights and velocity are (out, in); scratch holds
 * fedkd_nn_dense_sgd_scratch_floats(batch, out) floats. */
size_t fedkd_nn_dense_sgd_scratch_floats(int batch, int out);
/* 1 when the vector kernel runs for such a layer (GCC on x86-64 with
 * AVX-512, at least 4 units and 16 inputs); without it the one-weight-at-a-
 * time loop would be slower than the GEMM and the pass it replaces. */
int fedkd_nn_dense_sgd_vector(int out, int in);
void fedkd_nn_dense_weight_sgd(const float *d_output, const float *input, int batch, int out,
                               int in, const float *source, float *weights, float *velocity,
                               const fedkd_dense_sgd *s, float *scratch);
/* The same weight gradient added into d_weights (out, in), summed as the
 * fused step sums it: the first trainable layer's backward pass computes it
 * so (fedkd_nn_dense_own_grad) instead of through the BLAS, whose kernels
 * may sum in another order (OpenBLAS's Haswell kernels do), so that a step
 * with a gradient hook, a fresh step or another optimizer gives the bits of
 * the fused one. plain keeps to the one-weight-at-a-time loop. */
void fedkd_nn_dense_weight_grad(const float *d_output, const float *input, int batch, int out,
                                int in, float *d_weights, int plain, float *scratch);
/* 1 when the first trainable layer, dense with out units and in inputs,
 * takes its weight gradient from fedkd_nn_dense_weight_grad: wherever the
 * step could fuse (the vector kernel runs, or FEDKD_DENSE_SGD_PLAIN); 0
 * with FEDKD_DENSE_SGD_OFF. */
int fedkd_nn_dense_own_grad(int out, int in);

/* A dense layer's forward product, output (batch, out) = input (batch, in)
 * weights (out, in)^T + bias, through dot products that read both operands
 * in place (dense_dots.c). Output (n, o) is summed in 16 lanes, lane l
 * taking the products i = l, l + 16, ... by fused multiply-adds from 0 (the
 * last in % 16 lanes' final term 0 * 0), then the lanes as
 * ((l0 + l2) + (l1 + l3)) per block of 4, the 4 blocks as (b0 + b1) +
 * (b2 + b3), then + bias[o]: the same for every n and o, so a sample's
 * outputs do not depend on its batch. The AVX-512 kernel runs where the
 * CPU has it (fedkd_nn_dense_dots_avx512), unless plain; otherwise one
 * product at a time, the same bits (the tests' reference). */
void fedkd_nn_dense_dots(const float *input, const float *weights, const float *bias,
                         float *output, int batch, int out, int in, int plain);
int fedkd_nn_dense_dots_avx512(void);
/* The same product of a batch whose rows are anywhere (rows[n], in floats
 * each: read in place from a data set), the same bits; copy (batch, in)
 * gets the rows contiguous on the way, for the backward pass. */
void fedkd_nn_dense_dots_rows(const float *const *rows, float *copy, const float *weights,
                              const float *bias, float *output, int batch, int out, int in);
/* 1 when the dense layer's forward pass takes the AVX-512 kernel instead of
 * the BLAS: on shapes where it is faster (at least 32 units and 64 inputs;
 * more than 128 rows only with at least 384 inputs). */
int fedkd_nn_dense_dots_vector(int batch, int out, int in);
/* A dense layer's forward pass (parameters params) of a batch whose rows
 * are anywhere, through fedkd_nn_dense_dots_rows, the rows copied into
 * copy: the bits of its forward pass of those rows gathered. Returns 0,
 * doing nothing, where the layer's forward pass would not take the kernel. */
int fedkd_nn_dense_forward_rows(const fedkd_layer *layer, const float *params,
                                const float *const *rows, float *copy, float *output, int batch);

/* fedkd_model_backward's pass over the layers above layer `stop` (stop >=
 * the first trainable layer): returns the gradient of layer stop's output
 * (d_logits when stop is the last layer). */
const float *fedkd_nn_backward_above(fedkd_model *model, const float *d_logits, int batch,
                                     int stop);
/* The model's first layer with parameters when it is dense (the layer
 * whose weight gradient fedkd_nn_dense_weight_grad takes, and whose step
 * may fuse), else NULL. */
const fedkd_layer *fedkd_nn_first_dense_layer(const fedkd_model *model);

/* Uniform initialisation of `count` weights. FEDKD_INIT_DEFAULT picks He when
 * the layer feeds a ReLU (keeps the activation variance through the rectifier)
 * and Glorot otherwise (keeps forward and backward variance for linear
 * outputs such as the logits). */
void fedkd_nn_init_uniform(const fedkd_layer *layer, float *weights, size_t count,
                           size_t fan_in, size_t fan_out, fedkd_rng *rng);

/* Configures layers[0 .. spec->num_layers) from the spec: finds each kind,
 * chains the shapes, sets followed_by_relu and the parameter offsets, and
 * checks that the last layer outputs spec->num_classes values. Messages name
 * the layer by `where`: if where_is_key, `where` is a config key such as
 * "config key `model`" and the index goes inside the quotes
 * ("config key `model[2]`"); otherwise " layer 2" is appended. */
fedkd_status fedkd_nn_configure_layers(fedkd_layer *layers, const fedkd_model_spec *spec,
                                       const char *where, int where_is_key,
                                       size_t *num_params);

/* Writes where + suffix into `out`, putting the suffix inside a trailing
 * backquote when `where` ends with one (config keys). */
void fedkd_nn_format_location(char *out, size_t size, const char *where, int where_is_key,
                              const char *suffix);

#endif
