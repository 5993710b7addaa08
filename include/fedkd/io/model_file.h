/* HDF5 model files: one model's spec and weights, readable without the
 * simulator (h5py, h5dump). Pre-trained client models, exported final models
 * and the models inside checkpoints share this layout (README.md documents it):
 *
 *   /                       attributes: format = "fedkd-model", format_version (int),
 *                           spec (JSON layer list), input_shape (int[3]),
 *                           num_classes (int), num_params (int64),
 *                           model_name (preset name or "custom"),
 *                           metadata (JSON text, free-form: client, accuracy, ...)
 *   /layers/<i>_<kind>/weight   float32, the layer's natural shape
 *                               (dense: [out, in]; conv2d: [filters, in, k, k])
 *   /layers/<i>_<kind>/bias     float32 [out]
 *
 * <i> is the layer's index in the spec, two digits ("01_dense"), so that
 * listings sort in layer order; only layers with parameters have a group.
 * Integers are stored as int64, strings as variable-length UTF-8. Readers
 * accept any floating-point type for the weights (float64 from numpy is
 * converted) and fixed-length strings; model_name and metadata may be absent.
 *
 * The flat parameter buffer is the concatenation of these datasets in layer
 * order (weight then bias), exactly fedkd_model's layout. */
#ifndef FEDKD_MODEL_FILE_H
#define FEDKD_MODEL_FILE_H

#include <stddef.h>

#include "fedkd/core/hdf5_lazy.h"
#include "fedkd/nn/nn.h"

#define FEDKD_MODEL_FORMAT_VERSION 1
#define FEDKD_MODEL_FORMAT "fedkd-model"

/* Writes path.tmp, then renames it to path. metadata_json may be NULL. */
fedkd_status fedkd_model_file_save(const char *path, const fedkd_model_spec *spec,
                                   const float *params, size_t num_params,
                                   const char *metadata_json);

/* Reads a model file. *params is malloc'd (num_params floats); *metadata_json
 * (may pass NULL to skip) is malloc'd. Validates the format, the version, the
 * spec and that every dataset's shape matches the spec; messages name the
 * file and the dataset. */
fedkd_status fedkd_model_file_load(const char *path, fedkd_model_spec *spec, float **params,
                                   size_t *num_params, char **metadata_json);

/* The same layout under an open HDF5 group (used inside checkpoints).
 * `where` names a new / existing subgroup of `group`, or is "/" or "." for
 * `group` itself. In a file opened with MPI-IO every rank calls the writer
 * with the same spec (the metadata operations are collective); ranks that do
 * not own the weights pass params = NULL and write no data. */
fedkd_status fedkd_model_group_write(hid_t group, const char *where, const fedkd_model_spec *spec,
                                     const float *params, size_t num_params);
fedkd_status fedkd_model_group_read(hid_t group, const char *where, fedkd_model_spec *spec,
                                    float **params, size_t *num_params);
/* Writes the weights into a group made by fedkd_model_group_write with
 * params = NULL: parallel writers create every dataset first and write the
 * data afterwards (independent I/O, one rank). */
fedkd_status fedkd_model_group_write_weights(hid_t group, const char *where,
                                             const fedkd_model_spec *spec, const float *params,
                                             size_t num_params);

/* Returns 0 when the two specs describe the same network (input, classes,
 * layers; the preset name does not matter), else 1 with the first difference
 * in `out` ("layer 1 (dense): units 100 vs 200"). */
int fedkd_model_spec_difference(const fedkd_model_spec *a, const fedkd_model_spec *b, char *out,
                                size_t out_size);

/* One line: "flatten, dense 200, relu, dense 10 on 1x28x28 -> 10 classes". */
void fedkd_model_spec_describe(const fedkd_model_spec *spec, char *out, size_t out_size);

#endif
