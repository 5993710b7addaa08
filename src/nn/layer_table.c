#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

const fedkd_layer_kind *const fedkd_layer_kinds[] = {
    &fedkd_layer_kind_dense,   &fedkd_layer_kind_conv2d, &fedkd_layer_kind_maxpool,
    &fedkd_layer_kind_relu,    &fedkd_layer_kind_flatten, &fedkd_layer_kind_avgpool,
    &fedkd_layer_kind_batchnorm, &fedkd_layer_kind_groupnorm, &fedkd_layer_kind_residual,
    NULL,
};

const fedkd_layer_kind *fedkd_layer_kind_find(const char *name)
{
    if (!name) return NULL;
    for (const fedkd_layer_kind *const *kind = fedkd_layer_kinds; *kind; kind++)
        if (strcmp((*kind)->name, name) == 0) return *kind;
    return NULL;
}
