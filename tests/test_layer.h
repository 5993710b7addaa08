/* A layer spec of kind `kind` with `units` units and nothing else set, for
 * the tests that build small models by hand. */
#ifndef FEDKD_TEST_LAYER_H
#define FEDKD_TEST_LAYER_H

#include <stdio.h>
#include <string.h>

#include "fedkd/nn/nn.h"

static inline fedkd_layer_spec test_layer(const char *kind, int units)
{
    fedkd_layer_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.kind, sizeof spec.kind, "%s", kind);
    spec.units = units;
    return spec;
}

#endif
