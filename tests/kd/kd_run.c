/* Test driver for the pretrain and kd-study runners, until fedkd-sim's
 * `fedkd_run` dispatches to them:
 *
 *   mpiexec -np P kd_run [--quiet] [--set key=value ...]
 *       loads the config like fedkd-sim and runs fedkd_run_pretrain or
 *       fedkd_run_kd_study by config `mode`; the error handling is main's:
 *       a rank with a message prints it, every rank exits with the status.
 *   kd_run write-model PATH FEATURES CLASSES
 *       writes a model file "made elsewhere" (no fingerprint): dense 16,
 *       relu, dense CLASSES on FEATURES inputs, seeded weights.
 *   kd_run corrupt-model PATH
 *       replaces the first layer's weight dataset of a model file by one of
 *       the wrong shape.
 *   kd_run check-json PATH
 *       exits 0 if the file parses as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <hdf5.h>
#include <mpi.h>

#include "fedkd/config.h"
#include "fedkd/core.h"
#include "fedkd/kd.h"
#include "fedkd/model_file.h"
#include "fedkd/model_json.h"

static int write_model(const char *path, int features, int classes)
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

static int check_json(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (!file) return 1;
    char *text = NULL;
    size_t length = 0, capacity = 0, got;
    do {
        if (capacity - length < 4096) {
            char *grown = realloc(text, capacity + 65536);
            if (!grown) break;
            text = grown;
            capacity += 65536;
        }
        got = fread(text + length, 1, capacity - length - 1, file);
        length += got;
    } while (got > 0);
    fclose(file);
    if (!text) return 1;
    text[length] = '\0';
    cJSON *json = cJSON_Parse(text);
    free(text);
    int ok = json != NULL;
    cJSON_Delete(json);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "check-json") == 0) return check_json(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "write-model") == 0)
        return write_model(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 3 && strcmp(argv[1], "corrupt-model") == 0) return corrupt_model(argv[2]);

    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    fedkd_log_set_rank(rank, size);
    openblas_set_num_threads(1);
    const char **overrides = calloc((size_t)argc, sizeof *overrides);
    int num_overrides = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0) fedkd_log_set_quiet(1);
        else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) overrides[num_overrides++] = argv[++i];
    }
    fedkd_config config = {0};
    fedkd_status status = fedkd_config_load(&config, NULL, overrides, num_overrides);
    if (status) {
        if (rank == 0) fedkd_log_error("%s", fedkd_error_message());
    } else {
        fedkd_run_result result;
        if (strcmp(config.mode, "pretrain") == 0)
            status = fedkd_run_pretrain(&config, MPI_COMM_WORLD, &result);
        else
            status = fedkd_run_kd_study(&config, MPI_COMM_WORLD, &result);
        if (status && fedkd_error_message()[0]) fedkd_log_error("%s", fedkd_error_message());
    }
    fedkd_config_free(&config);
    free(overrides);
    MPI_Finalize();
    return status ? 1 : 0;
}
