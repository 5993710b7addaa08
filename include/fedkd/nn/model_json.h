/* Model specs from JSON: a preset name ("mlp", "cnn") or a list of layers,
 * for example
 *   [{"type": "conv2d", "filters": 6, "kernel": 5, "padding": 2},
 *    {"type": "relu"}, {"type": "maxpool", "kernel": 2}, {"type": "flatten"},
 *    {"type": "dense", "units": 10}]
 * The last dense layer's units must equal the dataset's number of classes. */
#ifndef FEDKD_MODEL_JSON_H
#define FEDKD_MODEL_JSON_H

#include <cjson/cJSON.h>

#include "fedkd/nn/nn.h"

/* `where` names the origin in messages, e.g. "config key `model`". */
fedkd_status fedkd_model_spec_from_json(fedkd_model_spec *spec, const cJSON *json,
                                        fedkd_shape input, int num_classes, const char *where);
/* The spec as a JSON layer list (caller deletes). */
cJSON *fedkd_model_spec_to_json(const fedkd_model_spec *spec);

#endif
