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

/* One layer as written in a model spec. Fields a kind does not use are 0. */
typedef struct fedkd_layer_spec {
    char kind[16];  /* "dense", "conv2d", "maxpool", "relu", "flatten" */
    int units;      /* dense: outputs */
    int filters;    /* conv2d: output channels */
    int kernel;     /* conv2d: square kernel size; maxpool: window */
    int stride;     /* conv2d, maxpool (0 means: conv 1, pool = kernel) */
    int padding;    /* conv2d: zero padding on each side */
    fedkd_init init;
} fedkd_layer_spec;

#define FEDKD_MAX_LAYERS 32

typedef struct fedkd_model_spec {
    char name[32];          /* preset name or "custom" */
    fedkd_shape input;      /* per-sample input shape */
    int num_classes;        /* output size of the last layer */
    int num_layers;
    fedkd_layer_spec layers[FEDKD_MAX_LAYERS];
} fedkd_model_spec;

/* Builds a preset: "mlp" (784-200-200-10, ReLU) or "cnn" (conv5x5x6, pool2,
 * conv5x5x16, pool2, dense 120, 84, classes, ReLU after each hidden layer).
 * `input` and `num_classes` come from the dataset. */
fedkd_status fedkd_model_spec_preset(fedkd_model_spec *spec, const char *name,
                                     fedkd_shape input, int num_classes);

/* ---- layers ------------------------------------------------------------- */

typedef struct fedkd_layer fedkd_layer;

/* A layer kind: one row of the layer table. `backward` ADDS parameter
 * gradients into d_params and OVERWRITES d_input (which may be NULL for the
 * first layer). `scratch` holds at least scratch_floats(layer, batch) floats. */
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
} fedkd_layer_kind;

struct fedkd_layer {
    const fedkd_layer_kind *kind;
    fedkd_layer_spec spec;
    fedkd_shape in_shape, out_shape;
    size_t num_params;    /* floats of this layer in the model's flat buffer */
    size_t param_offset;  /* where they start */
    int followed_by_relu; /* for the default initialiser */
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
    int max_batch;
    /* activations[i] is the input of layer i; activations[num_layers] holds
     * the logits. Views into one allocation sized for max_batch. */
    float *activations[FEDKD_MAX_LAYERS + 1];
    float *d_activations[2]; /* ping-pong buffers for backward */
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
 * (batch, num_classes), a view that stays valid until the next forward. */
const float *fedkd_model_forward(fedkd_model *model, const float *input, int batch);
/* Backward pass for the last forward: adds into model->grads. */
void fedkd_model_backward(fedkd_model *model, const float *d_logits, int batch);
void fedkd_model_zero_grad(fedkd_model *model);
int fedkd_model_num_classes(const fedkd_model *model);
/* Multiply-adds of one sample's forward pass (for FLOP counts). */
double fedkd_model_forward_macs(const fedkd_model *model);

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

#endif
