/* The neural engine: layers, models in one flat parameter buffer, losses and
 * optimizers.
 *
 * Tensors are row-major float arrays. Activations of a batch are laid out
 * (batch, channels, height, width); a dense layer sees (batch, features). */
#ifndef FEDKD_NN_H
#define FEDKD_NN_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/core/rng.h"
#include "fedkd/core/status.h"

/* ---- shapes and layer specs -------------------------------------------- */

/* Shape of one sample's activation. A flat vector is (features, 1, 1). */
typedef struct fedkd_shape {
    int channels, height, width;
} fedkd_shape;

static inline size_t fedkd_shape_size(fedkd_shape s)
{
    return (size_t)s.channels * (size_t)s.height * (size_t)s.width;
}

typedef enum fedkd_init {
    FEDKD_INIT_DEFAULT = 0, /* He for layers followed by ReLU, Glorot otherwise */
    FEDKD_INIT_HE,
    FEDKD_INIT_GLOROT
} fedkd_init;

/* A residual block's shortcut when its body changes the shape. */
typedef enum fedkd_projection {
    FEDKD_PROJECTION_NONE = 0,     /* identity: the body must keep the shape */
    FEDKD_PROJECTION_CONV,         /* 1x1 conv, strided to the body's output size */
    FEDKD_PROJECTION_CONV_BATCHNORM /* the same conv followed by a batchnorm */
} fedkd_projection;

/* One layer as written in a model spec. Fields a kind does not use are 0.
 * A residual block is stored flat: its body is the `body` layers just
 * before the `residual` entry (model_json.c nests them back for JSON). */
typedef struct fedkd_layer_spec {
    char kind[16];  /* "dense", "conv2d", "maxpool", "avgpool", "relu", "flatten",
                       "batchnorm", "groupnorm", "residual" */
    int units;      /* dense: outputs */
    int filters;    /* conv2d: output channels */
    int kernel;     /* conv2d: square kernel size; maxpool, avgpool: window */
    int stride;     /* conv2d, maxpool, avgpool (0 means: conv 1, pool = kernel) */
    int padding;    /* conv2d: zero padding on each side */
    fedkd_init init;
    int global;     /* avgpool: 1 averages each channel's whole plane to 1x1 */
    int groups;     /* groupnorm: channel groups (must divide the channels) */
    int body;       /* residual: how many layers before it form its body */
    fedkd_projection projection; /* residual */
    float momentum; /* batchnorm: weight of the batch in the running statistics (0: 0.1) */
    float epsilon;  /* batchnorm, groupnorm: added to the variance (0: 1e-5) */
} fedkd_layer_spec;

/* Flat layer entries of a model, counting each residual entry and each
 * layer of its body (resnet20 has 69). */
#define FEDKD_MAX_LAYERS 128

typedef struct fedkd_model_spec {
    char name[32];          /* preset name or "custom" */
    fedkd_shape input;      /* per-sample input shape */
    int num_classes;        /* output size of the last layer */
    int num_layers;
    fedkd_layer_spec layers[FEDKD_MAX_LAYERS];
} fedkd_model_spec;

/* Builds a preset: "mlp" (784-200-200-10, ReLU), "cnn" (conv5x5x6, pool2,
 * conv5x5x16, pool2, dense 120, 84, classes, ReLU after each hidden layer),
 * "resnet8" or "resnet20" (conv3x3 16 + batchnorm + relu, three stages of
 * one / three basic blocks at 16, 32, 64 channels, stride 2 at stages 2 and
 * 3 with a 1x1 conv + batchnorm shortcut, global average pool, dense).
 * `input` and `num_classes` come from the dataset. */
fedkd_status fedkd_model_spec_preset(fedkd_model_spec *spec, const char *name,
                                     fedkd_shape input, int num_classes);

/* ---- layers ------------------------------------------------------------- */

typedef struct fedkd_layer fedkd_layer;

/* A layer kind: one row of the layer table. `backward` ADDS parameter
 * gradients into d_params and OVERWRITES d_input (which may be NULL for the
 * first layer). `scratch` holds at least scratch_floats(layer, batch) floats
 * and is free between calls; layer->saved (saved_floats, NULL: none) keeps
 * what a forward pass leaves for its backward pass.
 *
 * In training mode (layer->training), a normalisation layer's forward pass
 * also updates its running statistics, which live in `params` (the model's
 * mutable flat buffer: the pointer is const only for the other kinds). */
typedef struct fedkd_layer_kind {
    const char *name;
    /* Checks the spec against the input shape and fills out_shape,
     * num_params and the layer's private geometry. */
    fedkd_status (*configure)(fedkd_layer *layer);
    void (*init_params)(const fedkd_layer *layer, float *params, fedkd_rng *rng);
    void (*forward)(const fedkd_layer *layer, const float *params, const float *input,
                    float *output, int batch, float *scratch);
    void (*backward)(const fedkd_layer *layer, const float *params, const float *input,
                     const float *output, const float *d_output, float *d_input,
                     float *d_params, int batch, float *scratch);
    size_t (*scratch_floats)(const fedkd_layer *layer, int batch);
    size_t (*saved_floats)(const fedkd_layer *layer, int batch);
} fedkd_layer_kind;

/* Parameters of a layer fall in three classes, by offset from param_offset:
 *   trainable:  everything outside [stats_offset, stats_offset + stats_count)
 *   normalisation: [norm_offset, norm_offset + norm_count): gamma, beta and
 *               the running statistics of batchnorm / groupnorm (FedBN keeps
 *               them on the client)
 *   running statistics: [stats_offset, stats_offset + stats_count), inside
 *               the normalisation range: written by the training forward
 *               pass, never by an optimizer (fedkd_optimizer_step_model) and
 *               with no gradient, but averaged, checkpointed and sent like
 *               every other parameter.
 * Only the running statistics may be written by a forward pass: local
 * training from shared weights (fedkd_train_settings.start_params) runs its
 * first forward pass on them in place when no layer has any. */
struct fedkd_layer {
    const fedkd_layer_kind *kind;
    fedkd_layer_spec spec;
    fedkd_shape in_shape, out_shape;
    size_t num_params;    /* floats of this layer in the model's flat buffer */
    size_t param_offset;  /* where they start */
    size_t norm_offset, norm_count;   /* see above; 0, 0: none */
    size_t stats_offset, stats_count; /* see above; 0, 0: none */
    int followed_by_relu; /* for the default initialiser */
    /* 1 on a relu followed by a 2x2 / 2 maxpool, and on that maxpool, in a
     * model without residual blocks: the relu's output aliases its input,
     * the maxpool applies the relu in place as it pools and masks its input
     * gradient by the relu too, and the model skips the relu (same bits as
     * the two layers apart). Set by the model; 0 on a layer built alone. */
    int relu_fused;
    int training;         /* copied from the model by fedkd_model_forward */
    float *saved;         /* (saved_floats) in the model's workspace; NULL: none */
    fedkd_shape skip_shape; /* residual: the input shape of its body */
    const float *skip;    /* residual: the input of its body (batch, skip_shape) */
    float *d_skip;        /* residual: backward writes the shortcut's input gradient here */
};

/* NULL if no layer kind has this name. */
const fedkd_layer_kind *fedkd_layer_kind_find(const char *name);
/* NULL-terminated table of every layer kind. */
extern const fedkd_layer_kind *const fedkd_layer_kinds[];

/* ---- models ------------------------------------------------------------- */

typedef struct fedkd_model {
    fedkd_model_spec spec;
    int num_layers;
    fedkd_layer layers[FEDKD_MAX_LAYERS];
    size_t num_params;
    float *params; /* (num_params) the one flat buffer: every layer's weights */
    float *grads;  /* (num_params) same layout */
    /* 1 when grads are known to be all zero: set by fedkd_model_zero_grad
     * and by the steps that clear them, cleared by fedkd_model_backward.
     * Code that writes grads any other way sets it to 0. */
    int grads_zero;
    int max_batch;
    /* Training mode: 1 while a training loop runs (batch statistics,
     * running statistics updated), 0 for evaluation, logits and teacher
     * predictions (running statistics). fedkd_model_create sets 0; the
     * loops that call fedkd_model_backward set 1 and put it back. */
    int training;
    /* activations[i] is the input of layer i; activations[num_layers] holds
     * the logits. Views into one allocation sized for max_batch. */
    float *activations[FEDKD_MAX_LAYERS + 1];
    float *d_activations[2]; /* ping-pong buffers for backward */
    float *d_skip;           /* a residual block's shortcut gradient, until its body is done */
    float *scratch;
    size_t activation_floats, scratch_floats_per_pass;
} fedkd_model;

/* Allocates a model for batches up to max_batch; parameters are zero until
 * fedkd_model_init_params. */
fedkd_status fedkd_model_create(fedkd_model **out, const fedkd_model_spec *spec, int max_batch);
void fedkd_model_destroy(fedkd_model **model);
/* What fedkd_model_create(spec, max_batch) would allocate, without
 * allocating it: the parameter count and the bytes (parameters, gradients,
 * activations and scratch). Fails as fedkd_model_create would on a bad spec. */
fedkd_status fedkd_model_estimate(const fedkd_model_spec *spec, int max_batch, size_t *num_params,
                                  double *bytes);
/* Seeded He / Glorot uniform initialisation of weights; biases 0. */
void fedkd_model_init_params(fedkd_model *model, uint64_t seed, uint64_t model_id);
/* Forward pass of `batch` samples (batch <= max_batch). Returns the logits,
 * (batch, num_classes), a view that stays valid until the next forward. The
 * input is copied in, unless it is fedkd_model_input's buffer already. */
const float *fedkd_model_forward(fedkd_model *model, const float *input, int batch);
/* The same for a batch whose rows are anywhere (rows[n], one sample each:
 * read in place from a data set, no gather): the same bits as copying them
 * into fedkd_model_input and calling fedkd_model_forward, and afterwards
 * the model's input holds them, for the backward pass. Where the model
 * starts with a dense layer (after flattens), its product reads the rows
 * where they are and copies them on the way. */
const float *fedkd_model_forward_rows(fedkd_model *model, const float *const *rows, int batch);
/* (max_batch samples) where the next forward pass takes its input from: a
 * batch gathered here is not copied again. A forward pass of other input
 * overwrites it; forward and backward passes of it leave it as it is. */
float *fedkd_model_input(fedkd_model *model);
/* Backward pass for the last forward: adds into model->grads. */
void fedkd_model_backward(fedkd_model *model, const float *d_logits, int batch);
void fedkd_model_zero_grad(fedkd_model *model);
int fedkd_model_num_classes(const fedkd_model *model);
/* Multiply-adds of one sample's forward pass (for FLOP counts). */
double fedkd_model_forward_macs(const fedkd_model *model);
/* The smallest batch the model can train on: 2 if it has a batchnorm
 * (batch statistics of one sample are degenerate), else 1. The training
 * loops skip a last partial minibatch smaller than this. */
int fedkd_model_spec_min_train_batch(const fedkd_model_spec *spec);
/* Sets *count to the number of parameter ranges of `which` kind and writes
 * up to `max` of them into begin[] / end[] (flat-buffer offsets, ascending):
 * FEDKD_PARAMS_NORM for the normalisation parameters (FedBN's local part),
 * FEDKD_PARAMS_STATS for the running statistics. */
typedef enum fedkd_param_class { FEDKD_PARAMS_NORM, FEDKD_PARAMS_STATS } fedkd_param_class;
fedkd_status fedkd_model_spec_param_ranges(const fedkd_model_spec *spec, fedkd_param_class which,
                                           size_t *begin, size_t *end, int max, int *count);

/* ---- losses --------------------------------------------------------------
 * All losses take logits (batch, classes), return the batch-mean loss and,
 * if d_logits is not NULL, write (not add) its gradient w.r.t. the logits. */

/* Softmax of logits / temperature, row-wise, numerically stable. */
void fedkd_softmax(const float *logits, float *probs, int batch, int classes, float temperature);

float fedkd_loss_cross_entropy(const float *logits, const int32_t *labels, int batch,
                               int classes, float *d_logits);

/* (1 - weight) * CE(y, softmax(z)) + weight * T^2 * KL(teacher || softmax_T(z)).
 * teacher_probs (batch, classes) are the teacher's already softened
 * probabilities at temperature T (softmax_T of its logits, or a mean over
 * teachers). labels may be NULL only when weight == 1. */
float fedkd_loss_kd(const float *logits, const float *teacher_probs, const int32_t *labels,
                    int batch, int classes, float temperature, float weight,
                    float *d_logits);

/* Mean absolute error between logits and target logits (FedMD's digest). */
float fedkd_loss_logit_mae(const float *logits, const float *target_logits, int batch,
                           int classes, float *d_logits);

/* ---- optimizers ---------------------------------------------------------- */

typedef struct fedkd_optimizer_settings {
    char name[16];       /* "sgd" or "adam" */
    float lr;
    float momentum;      /* sgd */
    int nesterov;        /* sgd */
    float weight_decay;  /* L2 added to the gradient (both) */
    float beta1, beta2, epsilon; /* adam */
} fedkd_optimizer_settings;

fedkd_optimizer_settings fedkd_optimizer_default_settings(void);

typedef struct fedkd_optimizer fedkd_optimizer;

fedkd_status fedkd_optimizer_create(fedkd_optimizer **out, const fedkd_optimizer_settings *settings,
                                    size_t num_params);
void fedkd_optimizer_destroy(fedkd_optimizer **optimizer);
/* params -= update(grads); grads are left untouched. */
void fedkd_optimizer_step(fedkd_optimizer *optimizer, float *params, const float *grads);
/* The same on model->params from model->grads, except the running
 * statistics of its normalisation layers, which keep their values (no
 * step, no weight decay, no momentum: their optimizer state stays 0). Every
 * training loop steps through this one. */
void fedkd_optimizer_step_model(fedkd_optimizer *optimizer, fedkd_model *model);
/* Adds a loop's own terms to model->grads[begin, end) (FedProx's proximal
 * term, SCAFFOLD's correction) just before a step reads that range. */
typedef void (*fedkd_gradient_hook)(void *context, fedkd_model *model, size_t begin, size_t end);
/* fedkd_optimizer_step_model followed by fedkd_model_zero_grad, in one pass
 * over the parameters, gradients and state (the same bits as the two calls).
 * A loop that zeroes the gradients once before its first step and then steps
 * through this needs no zero_grad before each backward pass. With a hook
 * (NULL: none), the step runs in small ranges and calls hook(context, model,
 * begin, end) on each before stepping it, so the terms it adds are still in
 * cache: the same bits as adding them over the whole buffer first. The
 * ranges cover what the step updates (not the running statistics). */
void fedkd_optimizer_step_model_clear_grads(fedkd_optimizer *optimizer, fedkd_model *model,
                                            fedkd_gradient_hook hook, void *context);
/* The same step, out of place: reads model->params (which may then be
 * shared, read-only parameters: a global model) and writes the stepped
 * parameters, running statistics included, into `into` (num_params floats,
 * not overlapping them); model->params is left as it was. Bit for bit what
 * copying them into `into` and stepping there gives. One pass with SGD's
 * first step after a reset (fedkd_optimizer_can_step_into), where the copy
 * would be a pass of its own; a copy and the step otherwise. */
int fedkd_optimizer_can_step_into(const fedkd_optimizer *optimizer);
void fedkd_optimizer_step_model_clear_grads_into(fedkd_optimizer *optimizer, fedkd_model *model,
                                                 float *into, fedkd_gradient_hook hook,
                                                 void *context);
/* fedkd_model_backward, then fedkd_optimizer_step_model_clear_grads with
 * the given hook (NULL: none), in one: the same bits. Where the model's
 * first trainable layer is dense (at least 4 units and 16 inputs, an
 * AVX-512 CPU), the step SGD's, the gradients were zero before and there is
 * no hook, that layer's weights step inside the backward pass, from a
 * gradient that stays in registers: for the mlp a pass over 0.6 MB of
 * gradients fewer each step, and never written. */
void fedkd_optimizer_backward_step(fedkd_optimizer *optimizer, fedkd_model *model,
                                   const float *d_logits, int batch, fedkd_gradient_hook hook,
                                   void *context);
/* The same with fedkd_optimizer_step_model_clear_grads_into: reads
 * model->params, writes the stepped parameters into `into`. Fuses as above
 * on SGD's first step after a reset (a client's first step from the global
 * model), which is the only step that steps out of place in one pass. */
void fedkd_optimizer_backward_step_into(fedkd_optimizer *optimizer, fedkd_model *model,
                                        const float *d_logits, int batch, float *into,
                                        fedkd_gradient_hook hook, void *context);
/* Clears momentum / moments and the step count. */
void fedkd_optimizer_reset(fedkd_optimizer *optimizer);
/* The persistent state as one flat buffer (for checkpoints). */
float *fedkd_optimizer_state(fedkd_optimizer *optimizer, size_t *num_floats);

/* ---- matrix multiply ------------------------------------------------------
 * C (m, n) = alpha * op(A) op(B) + beta * C, row-major. The fast path calls
 * cblas_sgemm; the naive one is the reference that tests compare against. */
void fedkd_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);
void fedkd_sgemm_naive(int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc);
/* The kernel family OpenBLAS chose for this CPU (or was told to use with
 * OPENBLAS_CORETYPE), e.g. "Cooperlake" or "Haswell". Its sgemm rounds
 * differently from another's, so a run's results are bit-identical only
 * between runs whose ranks all use the same one: summary.json records it. */
const char *fedkd_sgemm_core(void);

#endif
