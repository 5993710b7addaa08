/* HDF5 model files (layout in include/fedkd/io/model_file.h). */
#include "fedkd/core/checked.h"
#include "fedkd/core/core.h"
#include "fedkd/io/model_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fedkd/nn/model_json.h"
#include "io/h5_util.h"

/* One dataset of a layer: its name and natural shape. */
typedef struct layer_dataset {
    char name[8];
    int rank;
    hsize_t dims[4];
    size_t count;
    size_t offset; /* in the flat buffer */
} layer_dataset;

typedef struct layer_layout {
    char group[32];
    int num_datasets;
    layer_dataset datasets[2];
    char what[96]; /* "layer 1 (dense 200 on 784 inputs)" */
} layer_layout;

typedef struct model_layout {
    size_t num_params;
    int num_groups;
    layer_layout layers[FEDKD_MAX_LAYERS];
} model_layout;

static void set_dataset(layer_dataset *d, const char *name, int rank, const hsize_t *dims,
                        size_t offset)
{
    snprintf(d->name, sizeof d->name, "%s", name);
    d->rank = rank;
    d->count = 1;
    for (int i = 0; i < rank; i++) {
        d->dims[i] = dims[i];
        d->count *= (size_t)dims[i];
    }
    d->offset = offset;
}

/* Where each layer's weights live in the flat buffer and in the file. */
static fedkd_status model_layout_of(const fedkd_model_spec *spec, model_layout *out,
                                    const char *where)
{
    fedkd_model *model = NULL;
    memset(out, 0, sizeof *out);
    fedkd_status status = fedkd_model_create(&model, spec, 1);
    if (status) {
        char reason[512];
        snprintf(reason, sizeof reason, "%s", fedkd_error_message());
        return FEDKD_FAIL(status, "%s: %s", where, reason);
    }
    out->num_params = model->num_params;
    for (int i = 0; i < model->num_layers; i++) {
        const fedkd_layer *layer = &model->layers[i];
        if (layer->num_params == 0) continue;
        layer_layout *l = &out->layers[out->num_groups++];
        snprintf(l->group, sizeof l->group, "%02d_%.16s", i, layer->spec.kind);
        size_t base = layer->param_offset;
        size_t in = fedkd_shape_size(layer->in_shape);
        if (strcmp(layer->spec.kind, "dense") == 0 &&
            layer->num_params == (size_t)layer->spec.units * (in + 1)) {
            hsize_t weight[2] = {(hsize_t)layer->spec.units, in};
            hsize_t bias[1] = {(hsize_t)layer->spec.units};
            set_dataset(&l->datasets[0], "weight", 2, weight, base);
            set_dataset(&l->datasets[1], "bias", 1, bias, base + (size_t)layer->spec.units * in);
            l->num_datasets = 2;
            snprintf(l->what, sizeof l->what, "layer %d (dense %d on %zu inputs)", i,
                     layer->spec.units, in);
        } else if (strcmp(layer->spec.kind, "conv2d") == 0) {
            size_t per_filter = (size_t)layer->in_shape.channels * (size_t)layer->spec.kernel *
                                (size_t)layer->spec.kernel;
            hsize_t weight[4] = {(hsize_t)layer->spec.filters, (hsize_t)layer->in_shape.channels,
                                 (hsize_t)layer->spec.kernel, (hsize_t)layer->spec.kernel};
            hsize_t bias[1] = {(hsize_t)layer->spec.filters};
            set_dataset(&l->datasets[0], "weight", 4, weight, base);
            set_dataset(&l->datasets[1], "bias", 1, bias,
                        base + (size_t)layer->spec.filters * per_filter);
            l->num_datasets = 2;
            snprintf(l->what, sizeof l->what, "layer %d (conv2d %d filters %dx%d on %d channels)",
                     i, layer->spec.filters, layer->spec.kernel, layer->spec.kernel,
                     layer->in_shape.channels);
        } else {
            /* A kind without a natural weight / bias split: one flat vector. */
            hsize_t flat[1] = {layer->num_params};
            set_dataset(&l->datasets[0], "params", 1, flat, base);
            l->num_datasets = 1;
            snprintf(l->what, sizeof l->what, "layer %d (%.16s)", i, layer->spec.kind);
        }
        size_t covered = 0;
        for (int d = 0; d < l->num_datasets; d++) covered += l->datasets[d].count;
        if (covered != layer->num_params) {
            fedkd_model_destroy(&model);
            return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: layer %d (%s): %zu parameters but its "
                              "datasets hold %zu", where, i, layer->spec.kind, layer->num_params,
                              covered);
        }
    }
    fedkd_model_destroy(&model);
    return FEDKD_OK;
}

static void object_name(hid_t object, char *out, size_t size)
{
    if (H5Iget_name(object, out, size) <= 0) snprintf(out, size, "?");
}

static void file_name(hid_t object, char *out, size_t size)
{
    if (H5Fget_name(object, out, size) <= 0) snprintf(out, size, "(HDF5 file)");
}

/* "/global" + "layers" -> "/global/layers" (no double slash under "/"). */
static void join_path(char *out, size_t size, const char *parent, const char *child)
{
    size_t length = strlen(parent);
    snprintf(out, size, "%s%s%s", parent, length && parent[length - 1] == '/' ? "" : "/", child);
}

static int is_self(const char *where)
{
    return !where || strcmp(where, "/") == 0 || strcmp(where, ".") == 0 || where[0] == '\0';
}

fedkd_status fedkd_model_group_write(hid_t group, const char *where, const fedkd_model_spec *spec,
                                     const float *params, size_t num_params)
{
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    char file[512], reason[256], base[256], path[512];
    hid_t model_group = H5I_INVALID_HID, layers = H5I_INVALID_HID, layer = H5I_INVALID_HID;
    char *spec_text = NULL;
    model_layout *layout = malloc(sizeof *layout);
    fedkd_status status = FEDKD_OK;
    file_name(group, file, sizeof file);
    if (!layout) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory writing a model", file);
        goto done;
    }
    status = model_layout_of(spec, layout, file);
    if (status) goto done;
    if (layout->num_params != num_params) {
        status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                            "%s: the model spec has %zu parameters but %zu were given", file,
                            layout->num_params, num_params);
        goto done;
    }
    model_group = is_self(where) ? group
                                 : H5Gcreate2(group, where, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (model_group < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create group `%s`: %s", file, where,
                            fedkd_h5_last_error(reason, sizeof reason));
        goto done;
    }
    object_name(model_group, base, sizeof base);
    cJSON *spec_json = fedkd_model_spec_to_json(spec);
    spec_text = spec_json ? cJSON_PrintUnformatted(spec_json) : NULL;
    cJSON_Delete(spec_json);
    if (!spec_text) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory formatting the model spec", file);
        goto done;
    }
    int64_t version = FEDKD_MODEL_FORMAT_VERSION, classes = spec->num_classes,
            count = (int64_t)num_params;
    int64_t input[3] = {spec->input.channels, spec->input.height, spec->input.width};
    status = fedkd_h5_write_string_attribute(model_group, "format", FEDKD_MODEL_FORMAT, file);
    if (!status)
        status = fedkd_h5_write_int64_attribute(model_group, "format_version", &version, 1, file);
    if (!status) status = fedkd_h5_write_string_attribute(model_group, "model_name", spec->name, file);
    if (!status) status = fedkd_h5_write_string_attribute(model_group, "spec", spec_text, file);
    if (!status) status = fedkd_h5_write_int64_attribute(model_group, "input_shape", input, 3, file);
    if (!status)
        status = fedkd_h5_write_int64_attribute(model_group, "num_classes", &classes, 1, file);
    if (!status) status = fedkd_h5_write_int64_attribute(model_group, "num_params", &count, 1, file);
    if (status) goto done;

    layers = H5Gcreate2(model_group, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (layers < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create group `layers` in %s: %s", file, base,
                            fedkd_h5_last_error(reason, sizeof reason));
        goto done;
    }
    /* A failed data write (a full disk) must not skip the creation of the
     * remaining datasets: in a parallel file those calls are collective and
     * the other ranks make them. The first data failure is reported last. */
    fedkd_status data_status = FEDKD_OK;
    for (int g = 0; g < layout->num_groups && !status; g++) {
        const layer_layout *l = &layout->layers[g];
        layer = H5Gcreate2(layers, l->group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (layer < 0) {
            status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create group `%s`: %s", file, l->group,
                                fedkd_h5_last_error(reason, sizeof reason));
            break;
        }
        for (int d = 0; d < l->num_datasets && !status; d++) {
            const layer_dataset *ds = &l->datasets[d];
            char layer_path[300];
            hid_t dataset = H5I_INVALID_HID;
            join_path(layer_path, sizeof layer_path, base, "layers");
            snprintf(path, sizeof path, "%s/%s/%s", layer_path, l->group, ds->name);
            status = fedkd_h5_create_dataset(layer, ds->name, H5T_IEEE_F32LE, ds->rank, ds->dims,
                                             &dataset, file);
            if (!status && params && !data_status)
                data_status = fedkd_h5_write_all(dataset, H5T_NATIVE_FLOAT, params + ds->offset,
                                                 file, path);
            fedkd_h5_close(&dataset);
        }
        fedkd_h5_close(&layer);
    }
    if (!status) status = data_status;

done:
    fedkd_h5_close(&layer);
    fedkd_h5_close(&layers);
    if (model_group != group) fedkd_h5_close(&model_group);
    free(spec_text);
    free(layout);
    fedkd_h5_quiet_end(quiet);
    return status;
}

fedkd_status fedkd_model_group_write_weights(hid_t group, const char *where,
                                             const fedkd_model_spec *spec, const float *params,
                                             size_t num_params)
{
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    char file[512], reason[256], base[256], path[600];
    hid_t model_group = H5I_INVALID_HID, dataset = H5I_INVALID_HID;
    model_layout *layout = malloc(sizeof *layout);
    fedkd_status status = FEDKD_OK;
    file_name(group, file, sizeof file);
    if (!layout) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory writing a model", file);
        goto done;
    }
    status = model_layout_of(spec, layout, file);
    if (!status && layout->num_params != num_params)
        status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                            "%s: the model spec has %zu parameters but %zu were given", file,
                            layout->num_params, num_params);
    if (status) goto done;
    model_group = is_self(where) ? group : H5Gopen2(group, where, H5P_DEFAULT);
    if (model_group < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open group `%s`: %s", file, where,
                            fedkd_h5_last_error(reason, sizeof reason));
        goto done;
    }
    object_name(model_group, base, sizeof base);
    for (int g = 0; g < layout->num_groups && !status; g++) {
        const layer_layout *l = &layout->layers[g];
        for (int d = 0; d < l->num_datasets && !status; d++) {
            const layer_dataset *ds = &l->datasets[d];
            char relative[64];
            snprintf(relative, sizeof relative, "layers/%s/%s", l->group, ds->name);
            join_path(path, sizeof path, base, relative);
            dataset = H5Dopen2(model_group, relative, H5P_DEFAULT);
            status = dataset < 0
                         ? FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open dataset `%s`: %s", file, path,
                                      fedkd_h5_last_error(reason, sizeof reason))
                         : fedkd_h5_write_all(dataset, H5T_NATIVE_FLOAT, params + ds->offset,
                                              file, path);
            fedkd_h5_close(&dataset);
        }
    }
done:
    if (model_group != group) fedkd_h5_close(&model_group);
    free(layout);
    fedkd_h5_quiet_end(quiet);
    return status;
}

fedkd_status fedkd_model_group_read(hid_t group, const char *where, fedkd_model_spec *spec,
                                    float **params, size_t *num_params)
{
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    char file[512], reason[256], base[256], location[640];
    hid_t model_group = H5I_INVALID_HID, layers = H5I_INVALID_HID, layer = H5I_INVALID_HID,
          dataset = H5I_INVALID_HID;
    char *format = NULL, *spec_text = NULL, *name = NULL;
    cJSON *spec_json = NULL;
    model_layout *layout = malloc(sizeof *layout);
    float *values = NULL;
    fedkd_status status = FEDKD_OK;
    *params = NULL;
    *num_params = 0;
    file_name(group, file, sizeof file);
    if (!layout) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory reading a model", file);
        goto done;
    }
    if (!is_self(where)) {
        htri_t exists = H5Lexists(group, where, H5P_DEFAULT);
        if (exists <= 0) {
            object_name(group, base, sizeof base);
            join_path(location, sizeof location, base, where);
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: group `%s` (the model) is missing", file,
                                location);
            goto done;
        }
    }
    model_group = is_self(where) ? group : H5Gopen2(group, where, H5P_DEFAULT);
    if (model_group < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: `%s` cannot be opened as a group: %s", file,
                            where, fedkd_h5_last_error(reason, sizeof reason));
        goto done;
    }
    object_name(model_group, base, sizeof base);

    status = fedkd_h5_read_string_attribute(model_group, "format", &format, file, base);
    if (status) goto done;
    if (strcmp(format, FEDKD_MODEL_FORMAT) != 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: %s is not a fedkd model (attribute `format` is \"%.64s\", "
                            "expected \"%s\")",
                            file, base, format, FEDKD_MODEL_FORMAT);
        goto done;
    }
    int64_t version = 0, classes = 0, count = 0, input[3] = {0, 0, 0};
    status = fedkd_h5_read_int64_attribute(model_group, "format_version", &version, 1, file, base);
    if (status) goto done;
    if (version > FEDKD_MODEL_FORMAT_VERSION || version < 1) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: model format_version %lld in %s is %s; this fedkd-sim reads "
                            "version %d",
                            file, (long long)version, base,
                            version > FEDKD_MODEL_FORMAT_VERSION ? "newer than it supports"
                                                                 : "invalid",
                            FEDKD_MODEL_FORMAT_VERSION);
        goto done;
    }
    status = fedkd_h5_read_int64_attribute(model_group, "input_shape", input, 3, file, base);
    if (!status)
        status = fedkd_h5_read_int64_attribute(model_group, "num_classes", &classes, 1, file, base);
    if (!status)
        status = fedkd_h5_read_int64_attribute(model_group, "num_params", &count, 1, file, base);
    if (!status) status = fedkd_h5_read_string_attribute(model_group, "spec", &spec_text, file, base);
    if (status) goto done;
    for (int i = 0; i < 3; i++)
        if (input[i] < 1 || input[i] > INT32_MAX) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: attribute `input_shape` of %s is [%lld, %lld, %lld], "
                                "expected 3 positive sizes",
                                file, base, (long long)input[0], (long long)input[1],
                                (long long)input[2]);
            goto done;
        }
    /* A sample's size is an int in the layers (and a dense layer's fan-in). */
    char what[320];
    snprintf(what, sizeof what, "attribute `input_shape` of %s", base);
    uint64_t extents[3] = {(uint64_t)input[0], (uint64_t)input[1], (uint64_t)input[2]};
    size_t sample = 0;
    status = fedkd_size_of_extents(file, what, 3, extents, 1, 0, 0, &sample, NULL);
    if (!status && sample > INT32_MAX)
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: %s is [%lld, %lld, %lld], %zu values a sample, more than %d",
                            file, what, (long long)input[0], (long long)input[1],
                            (long long)input[2], sample, INT32_MAX);
    if (status) goto done;
    if (classes < 1 || classes > INT32_MAX) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `num_classes` of %s is %lld", file,
                            base, (long long)classes);
        goto done;
    }
    spec_json = cJSON_Parse(spec_text);
    snprintf(location, sizeof location, "%s (%s): attribute `spec`", file, base);
    if (!spec_json) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: not valid JSON", location);
        goto done;
    }
    fedkd_shape shape = {(int)input[0], (int)input[1], (int)input[2]};
    status = fedkd_model_spec_from_json(spec, spec_json, shape, (int)classes, location);
    if (status) {
        /* A spec error in a file is a format error, not a config error. */
        char message[768];
        snprintf(message, sizeof message, "%s", fedkd_error_message());
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s", message);
        goto done;
    }
    int has_name = 0;
    status = fedkd_h5_has_attribute(model_group, "model_name", &has_name, file, base);
    if (!status && has_name)
        status = fedkd_h5_read_string_attribute(model_group, "model_name", &name, file, base);
    if (status) goto done;
    snprintf(spec->name, sizeof spec->name, "%s", name && name[0] ? name : "custom");

    status = model_layout_of(spec, layout, location);
    if (status) goto done;
    if ((uint64_t)count != layout->num_params) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: attribute `num_params` of %s is %lld but its spec has %zu "
                            "parameters",
                            file, base, (long long)count, layout->num_params);
        goto done;
    }
    char layers_path[300];
    join_path(layers_path, sizeof layers_path, base, "layers");
    if (H5Lexists(model_group, "layers", H5P_DEFAULT) <= 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: group `%s` is missing", file, layers_path);
        goto done;
    }
    layers = H5Gopen2(model_group, "layers", H5P_DEFAULT);
    H5G_info_t info;
    if (layers < 0 || H5Gget_info(layers, &info) < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: `%s` cannot be opened as a group: %s", file,
                            layers_path, fedkd_h5_last_error(reason, sizeof reason));
        goto done;
    }
    if (info.nlinks != (hsize_t)layout->num_groups) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: group `%s` has %llu members, expected %d (one per layer with "
                            "parameters)",
                            file, layers_path, (unsigned long long)info.nlinks, layout->num_groups);
        goto done;
    }
    values = malloc((layout->num_params ? layout->num_params : 1) * sizeof *values);
    if (!values) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for %zu parameters", file,
                            layout->num_params);
        goto done;
    }
    for (int g = 0; g < layout->num_groups && !status; g++) {
        const layer_layout *l = &layout->layers[g];
        snprintf(location, sizeof location, "%s/%s", layers_path, l->group);
        if (H5Lexists(layers, l->group, H5P_DEFAULT) <= 0) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: group `%s` is missing (expected for %s)",
                                file, location, l->what);
            break;
        }
        layer = H5Gopen2(layers, l->group, H5P_DEFAULT);
        if (layer < 0) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: `%s` cannot be opened as a group: %s", file,
                                location, fedkd_h5_last_error(reason, sizeof reason));
            break;
        }
        for (int d = 0; d < l->num_datasets && !status; d++) {
            const layer_dataset *ds = &l->datasets[d];
            char path[700], why[128];
            snprintf(path, sizeof path, "%s/%s", location, ds->name);
            snprintf(why, sizeof why, "for %s", l->what);
            status = fedkd_h5_open_dataset(layer, ds->name, H5T_FLOAT, ds->rank, ds->dims,
                                           &dataset, file, path, why);
            if (!status)
                status = fedkd_h5_read_all(dataset, H5T_NATIVE_FLOAT, values + ds->offset, file,
                                           path);
            fedkd_h5_close(&dataset);
        }
        fedkd_h5_close(&layer);
    }
    if (status) goto done;
    *params = values;
    *num_params = layout->num_params;
    values = NULL;

done:
    fedkd_h5_close(&dataset);
    fedkd_h5_close(&layer);
    fedkd_h5_close(&layers);
    if (model_group != group) fedkd_h5_close(&model_group);
    cJSON_Delete(spec_json);
    free(format);
    free(spec_text);
    free(name);
    free(values);
    free(layout);
    fedkd_h5_quiet_end(quiet);
    return status;
}

/* Forces a closed file's bytes to disk before it is renamed into place. */
static fedkd_status sync_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot reopen to sync: %s", path,
                                  strerror(errno));
    int failed = fsync(fd) != 0;
    int saved = errno;
    close(fd);
    if (failed) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: sync failed: %s", path, strerror(saved));
    return FEDKD_OK;
}

fedkd_status fedkd_model_file_save(const char *path, const fedkd_model_spec *spec,
                                   const float *params, size_t num_params,
                                   const char *metadata_json)
{
    char temporary[1024], reason[256];
    if (snprintf(temporary, sizeof temporary, "%s.tmp", path) >= (int)sizeof temporary)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: path too long", path);
    FEDKD_HDF5_REQUIRE();
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    fedkd_status status = FEDKD_OK;
    /* No sieve buffer: a failed raw write is then reported by H5Dwrite
     * instead of being lost in a flush at close. */
    hid_t access = H5Pcreate(H5P_FILE_ACCESS);
    hid_t file = access >= 0 && H5Pset_sieve_buf_size(access, 0) >= 0
                     ? H5Fcreate(temporary, H5F_ACC_TRUNC, H5P_DEFAULT, access)
                     : H5I_INVALID_HID;
    fedkd_h5_close(&access);
    if (file < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", temporary,
                            fedkd_h5_last_error(reason, sizeof reason));
        fedkd_h5_quiet_end(quiet);
        return status;
    }
    status = fedkd_model_group_write(file, "/", spec, params, num_params);
    if (!status)
        status = fedkd_h5_write_string_attribute(file, "metadata",
                                                 metadata_json ? metadata_json : "{}", temporary);
    if (H5Fclose(file) < 0 && !status)
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: write failed: %s", temporary,
                            fedkd_h5_last_error(reason, sizeof reason));
    if (!status) status = sync_file(temporary);
    if (!status) {
        /* The file must read back as written before it replaces anything. */
        fedkd_model_spec back_spec;
        float *back = NULL;
        size_t back_count = 0;
        fedkd_status read = fedkd_model_file_load(temporary, &back_spec, &back, &back_count, NULL);
        if (read || back_count != num_params ||
            memcmp(back, params, num_params * sizeof(float)) != 0) {
            char message[1024];
            snprintf(message, sizeof message, "%s", read ? fedkd_error_message() : "other weights");
            status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: does not read back as written (a failed "
                                "write?): %s", temporary, message);
        }
        free(back);
    }
    if (!status && rename(temporary, path) != 0)
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot rename %s into place: %s", path, temporary,
                            strerror(errno));
    if (status) unlink(temporary);
    fedkd_h5_quiet_end(quiet);
    return status;
}

fedkd_status fedkd_model_file_load(const char *path, fedkd_model_spec *spec, float **params,
                                   size_t *num_params, char **metadata_json)
{
    *params = NULL;
    *num_params = 0;
    if (metadata_json) *metadata_json = NULL;
    FEDKD_HDF5_REQUIRE();
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    hid_t file = H5I_INVALID_HID;
    fedkd_status status = fedkd_h5_open_read(path, "a fedkd model file", &file);
    if (!status) {
        /* A checkpoint's root says "fedkd-checkpoint": name the right command. */
        char *format = NULL;
        status = fedkd_h5_read_string_attribute(file, "format", &format, path, "/");
        if (!status && strcmp(format, FEDKD_MODEL_FORMAT) != 0)
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: not a fedkd model file (attribute `format` is \"%.64s\", "
                                "expected \"%s\")%s",
                                path, format, FEDKD_MODEL_FORMAT,
                                strcmp(format, "fedkd-checkpoint") == 0
                                    ? "; `fedkd-sim export` turns a checkpoint into a model file"
                                    : "");
        free(format);
    }
    if (!status) status = fedkd_model_group_read(file, "/", spec, params, num_params);
    if (!status && metadata_json) {
        int present = 0;
        status = fedkd_h5_has_attribute(file, "metadata", &present, path, "/");
        if (!status && present)
            status = fedkd_h5_read_string_attribute(file, "metadata", metadata_json, path, "/");
        else if (!status && !(*metadata_json = strdup("{}")))
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory");
    }
    fedkd_h5_close(&file);
    if (status) {
        free(*params);
        *params = NULL;
        *num_params = 0;
        if (metadata_json) {
            free(*metadata_json);
            *metadata_json = NULL;
        }
    }
    fedkd_h5_quiet_end(quiet);
    return status;
}

/* ---- specs -------------------------------------------------------------------- */

int fedkd_model_spec_difference(const fedkd_model_spec *a, const fedkd_model_spec *b, char *out,
                                size_t out_size)
{
    if (out_size) out[0] = '\0';
    if (a->input.channels != b->input.channels || a->input.height != b->input.height ||
        a->input.width != b->input.width) {
        snprintf(out, out_size, "input %dx%dx%d vs %dx%dx%d", a->input.channels, a->input.height,
                 a->input.width, b->input.channels, b->input.height, b->input.width);
        return 1;
    }
    if (a->num_classes != b->num_classes) {
        snprintf(out, out_size, "%d classes vs %d", a->num_classes, b->num_classes);
        return 1;
    }
    if (a->num_layers != b->num_layers) {
        snprintf(out, out_size, "%d layers vs %d", a->num_layers, b->num_layers);
        return 1;
    }
    for (int i = 0; i < a->num_layers; i++) {
        const fedkd_layer_spec *x = &a->layers[i], *y = &b->layers[i];
        if (strncmp(x->kind, y->kind, sizeof x->kind) != 0) {
            snprintf(out, out_size, "layer %d: %.16s vs %.16s", i, x->kind, y->kind);
            return 1;
        }
        const struct {
            const char *name;
            int x, y;
        } fields[] = {{"units", x->units, y->units},       {"filters", x->filters, y->filters},
                      {"kernel", x->kernel, y->kernel},    {"stride", x->stride, y->stride},
                      {"padding", x->padding, y->padding}, {"init", (int)x->init, (int)y->init},
                      {"global", x->global, y->global},    {"groups", x->groups, y->groups},
                      {"body", x->body, y->body},
                      {"projection", (int)x->projection, (int)y->projection}};
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
            if (fields[f].x != fields[f].y) {
                snprintf(out, out_size, "layer %d (%.16s): %s %d vs %d", i, x->kind,
                         fields[f].name, fields[f].x, fields[f].y);
                return 1;
            }
        if (x->momentum != y->momentum || x->epsilon != y->epsilon) {
            snprintf(out, out_size, "layer %d (%.16s): momentum %g, epsilon %g vs %g, %g", i,
                     x->kind, (double)x->momentum, (double)x->epsilon, (double)y->momentum,
                     (double)y->epsilon);
            return 1;
        }
    }
    return 0;
}

void fedkd_model_spec_describe(const fedkd_model_spec *spec, char *out, size_t out_size)
{
    size_t n = 0;
    if (out_size) out[0] = '\0';
    for (int i = 0; i < spec->num_layers; i++) {
        const fedkd_layer_spec *l = &spec->layers[i];
        n = fedkd_appendf(out, out_size, n, "%s%.16s", i ? ", " : "", l->kind);
        if (l->units) n = fedkd_appendf(out, out_size, n, " %d", l->units);
        if (l->filters)
            n = fedkd_appendf(out, out_size, n, " %dx%dx%d", l->filters, l->kernel, l->kernel);
        else if (l->kernel)
            n = fedkd_appendf(out, out_size, n, " %d", l->kernel);
        if (l->stride) n = fedkd_appendf(out, out_size, n, " stride %d", l->stride);
        if (l->padding) n = fedkd_appendf(out, out_size, n, " pad %d", l->padding);
    }
    fedkd_appendf(out, out_size, n, " on %dx%dx%d -> %d classes", spec->input.channels,
                  spec->input.height, spec->input.width, spec->num_classes);
}
