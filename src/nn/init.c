/* Weight initialisation shared by the layers with parameters. It lives in its
 * own file so that the layer files (conv2d.c, dense.c) and model.c, which
 * calls into the layers, do not call each other. */
#include <math.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

void fedkd_nn_init_uniform(const fedkd_layer *layer, float *weights, size_t count,
                           size_t fan_in, size_t fan_out, fedkd_rng *rng)
{
    fedkd_init init = layer->spec.init;
    if (init == FEDKD_INIT_DEFAULT)
        init = layer->followed_by_relu ? FEDKD_INIT_HE : FEDKD_INIT_GLOROT;
    double limit = init == FEDKD_INIT_HE ? sqrt(6.0 / (double)fan_in)
                                         : sqrt(6.0 / (double)(fan_in + fan_out));
    for (size_t i = 0; i < count; i++)
        weights[i] = (float)((2.0 * fedkd_rng_uniform(rng) - 1.0) * limit);
}
