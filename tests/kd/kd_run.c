/* Helpers of the kd tests (the runs themselves go through fedkd-sim):
 *
 *   kd_run write-model PATH FEATURES CLASSES [nan]
 *       writes a model file "made elsewhere" (no fingerprint): dense 16,
 *       relu, dense CLASSES on FEATURES inputs, seeded weights; with `nan`,
 *       the last bias is NaN (a model whose predictions are NaN).
 *   kd_run corrupt-model PATH
 *       replaces the first layer's weight dataset of a model file by one of
 *       the wrong shape.
 *   kd_run check-json PATH
 *       exits 0 if the file parses as JSON.
 *   kd_run write-data PATH COUNT FEATURES CLASSES STREAM
 *       writes COUNT synthetic samples (seed 1, the given stream) as an
 *       HDF5 data file: a training, test or public file for data.name hdf5.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "fedkd/core/core.h"
#include "fedkd/data/data.h"
#include "fedkd/io/model_file.h"
#include "fedkd/nn/model_json.h"
#include "fedkd/io/runlog.h"

static int write_model(const char *path, int features, int classes, int poisoned)
{
    char text[256];
    snprintf(text, sizeof text,
             "[{\"type\":\"dense\",\"units\":16},{\"type\":\"relu\"},"
             "{\"type\":\"dense\",\"units\":%d}]", classes);
    cJSON *layers = cJSON_Parse(text);
    fedkd_model_spec spec;
    fedkd_model *model = NULL;
    fedkd_status status = fedkd_model_spec_from_json(&spec, layers, (fedkd_shape){features, 1, 1},
                                                     classes, "write-model");
    cJSON_Delete(layers);
    if (!status) status = fedkd_model_create(&model, &spec, 1);
    if (!status) {
        fedkd_model_init_params(model, 99, 0);
        if (poisoned) model->params[model->num_params - 1] = NAN; /* a logit bias */
        status = fedkd_model_file_save(path, &spec, model->params, model->num_params, NULL);
    }
    fedkd_model_destroy(&model);
    if (status) fprintf(stderr, "write-model: %s\n", fedkd_error_message());
    return status ? 1 : 0;
}

static herr_t first_group(hid_t group, const char *name, const H5L_info_t *info, void *out)
{
    (void)group;
    (void)info;
    snprintf(out, 64, "%s", name);
    return 1; /* stop at the first */
}

static int corrupt_model(const char *path)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) return 1;
    char name[64] = "", where[160];
    hsize_t index = 0;
    H5Literate_by_name(file, "/layers", H5_INDEX_NAME, H5_ITER_INC, &index, first_group, name,
                       H5P_DEFAULT);
    hid_t layers = H5Gopen2(file, "/layers", H5P_DEFAULT);
    snprintf(where, sizeof where, "%s/weight", name);
    int failed = layers < 0 || !name[0] || H5Ldelete(layers, where, H5P_DEFAULT) < 0;
    if (!failed) {
        hsize_t dims[2] = {2, 3};
        float zeros[6] = {0};
        hid_t space = H5Screate_simple(2, dims, NULL);
        hid_t set = H5Dcreate2(layers, where, H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT,
                               H5P_DEFAULT);
        failed = set < 0 || H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) < 0;
        if (set >= 0) H5Dclose(set);
        H5Sclose(space);
    }
    if (layers >= 0) H5Gclose(layers);
    H5Fclose(file);
    if (failed) fprintf(stderr, "corrupt-model: could not rewrite %s in %s\n", where, path);
    return failed;
}

static int write_data(const char *path, long count, int features, int classes, long stream)
{
    fedkd_synthetic_settings s = fedkd_synthetic_default_settings();
    s.count = (size_t)count;
    s.shape = (fedkd_shape){features, 1, 1};
    s.num_classes = classes;
    s.seed = 1;
    s.stream = (uint64_t)stream;
    fedkd_dataset *data = NULL;
    fedkd_status status = fedkd_synthetic_generate(&data, &s);
    if (!status) status = fedkd_h5data_save(data, path);
    fedkd_dataset_destroy(&data);
    if (status) fprintf(stderr, "write-data: %s\n", fedkd_error_message());
    return status ? 1 : 0;
}

static int check_json(const char *path)
{
    cJSON *json = NULL;
    int ok = fedkd_read_json_file(path, "file", &json) == FEDKD_OK && json != NULL;
    if (!ok) fprintf(stderr, "check-json: %s\n", fedkd_error_message());
    cJSON_Delete(json);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "check-json") == 0) return check_json(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "write-model") == 0)
        return write_model(argv[2], atoi(argv[3]), atoi(argv[4]),
                           argc >= 6 && strcmp(argv[5], "nan") == 0);
    if (argc >= 3 && strcmp(argv[1], "corrupt-model") == 0) return corrupt_model(argv[2]);
    if (argc >= 7 && strcmp(argv[1], "write-data") == 0)
        return write_data(argv[2], atol(argv[3]), atoi(argv[4]), atoi(argv[5]), atol(argv[6]));

    fprintf(stderr, "usage: kd_run write-model PATH FEATURES CLASSES [nan] | corrupt-model PATH | "
                    "check-json PATH | write-data PATH COUNT FEATURES CLASSES STREAM\n");
    return 2;
}
