/* Convolution vectorised over the filters (conv_filters.c): for stride 1 and
 * filters in groups of 16, without im2col. Private to the nn layer. */
#ifndef FEDKD_NN_CONV_FILTERS_H
#define FEDKD_NN_CONV_FILTERS_H

#include <stddef.h>

#include "nn/nn_private.h"

/* Whether a layer of this geometry takes the functions below. */
int fedkd_conv_filters_applies(const fedkd_conv2d_geometry *g);

/* Floats of scratch the forward and the backward pass need, at any batch. */
size_t fedkd_conv_filters_scratch_floats(const fedkd_conv2d_geometry *g);

/* output (batch, filters, out_h, out_w) from input (batch, in_channels, in_h,
 * in_w), weights (filters, in_channels, kernel, kernel) and bias (filters). */
void fedkd_conv_filters_forward(const fedkd_conv2d_geometry *g, const float *weights,
                                const float *bias, const float *input, float *output, int batch,
                                float *scratch);

/* Adds the weight and bias gradients into d_weights and d_bias and, if d_input
 * is not NULL, overwrites d_input (batch, in_channels, in_h, in_w). */
void fedkd_conv_filters_backward(const fedkd_conv2d_geometry *g, const float *weights,
                                 const float *input, const float *d_output, float *d_input,
                                 float *d_weights, float *d_bias, int batch, float *scratch);

#endif
