/* fedkd-idx2h5: converts IDX images + labels (e.g. Fashion-MNIST) into the
 * project's HDF5 layout, so runs can read only the rows each rank needs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/data/data.h"

static const char usage_text[] =
    "Usage: fedkd-idx2h5 IMAGES LABELS OUT.h5 [--limit N] [--raw] [--num-classes K]\n"
    "\n"
    "Converts an IDX images file and its IDX labels file (gzipped or plain, such as\n"
    "Fashion-MNIST's train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz)\n"
    "into the fedkd-sim HDF5 layout:\n"
    "  /features     float32 [n, 1, rows, cols]\n"
    "  /labels       int32   [n]\n"
    "  num_classes   int32 attribute on the root group\n"
    "\n"
    "Options:\n"
    "  --limit N        keep only the first N samples\n"
    "  --raw            store pixels scaled to [0, 1]; by default they are also\n"
    "                   normalised with the Fashion-MNIST mean 0.2860 and std 0.3530,\n"
    "                   exactly as fedkd-sim's own IDX loader does\n"
    "  --num-classes K  class count to record (default: largest label + 1)\n"
    "  -h, --help       show this help and exit\n"
    "\n"
    "The file is written as OUT.h5.tmp and renamed when complete. Example:\n"
    "  fedkd-idx2h5 /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\\n"
    "               /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz \\\n"
    "               fashion-mnist-train.h5\n";

static int fail_usage(const char *message, const char *argument)
{
    fprintf(stderr, "fedkd-idx2h5: %s%s (see fedkd-idx2h5 --help)\n", message, argument);
    return 2;
}

/* A whole decimal number in [minimum, maximum]; anything else is rejected. */
static int parse_count(const char *text, unsigned long long minimum, unsigned long long maximum,
                       unsigned long long *value)
{
    if (!text || *text < '0' || *text > '9') return 0;
    char *end = NULL;
    errno = 0;
    *value = strtoull(text, &end, 10);
    return errno == 0 && *end == '\0' && *value >= minimum && *value <= maximum;
}

int main(int argc, char **argv)
{
    const char *positional[3] = {NULL, NULL, NULL};
    int num_positional = 0, raw = 0, num_classes = 0;
    size_t limit = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        unsigned long long value = 0;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(arg, "--raw") == 0) {
            raw = 1;
        } else if (strcmp(arg, "--limit") == 0 || strcmp(arg, "--num-classes") == 0) {
            if (i + 1 >= argc) return fail_usage("missing value after ", arg);
            const char *text = argv[++i];
            if (strcmp(arg, "--limit") == 0) {
                if (!parse_count(text, 1, (unsigned long long)SIZE_MAX, &value))
                    return fail_usage("--limit expects a whole number >= 1, got ", text);
                limit = (size_t)value;
            } else {
                if (!parse_count(text, 1, 255, &value))
                    return fail_usage("--num-classes expects a whole number in 1..255, got ",
                                      text);
                num_classes = (int)value;
            }
        } else if (arg[0] == '-' && arg[1] != '\0') {
            return fail_usage("unknown option ", arg);
        } else {
            if (num_positional == 3) return fail_usage("unexpected extra argument ", arg);
            positional[num_positional++] = arg;
        }
    }
    if (num_positional != 3) return fail_usage("expected IMAGES LABELS OUT.h5", "");

    fedkd_dataset *dataset = NULL;
    fedkd_status status = fedkd_idx_load(&dataset, positional[0], positional[1], limit);
    if (status != FEDKD_OK) goto fail;
    if (num_classes > 0) {
        if (num_classes < dataset->num_classes) {
            fprintf(stderr,
                    "fedkd-idx2h5: --num-classes %d is too small: %s has labels up to %d\n",
                    num_classes, positional[1], dataset->num_classes - 1);
            fedkd_dataset_destroy(&dataset);
            return 1;
        }
        dataset->num_classes = num_classes;
    }
    if (!raw) fedkd_dataset_normalize(dataset, FEDKD_FASHION_MNIST_MEAN, FEDKD_FASHION_MNIST_STD);
    status = fedkd_h5data_save(dataset, positional[2]);
    if (status != FEDKD_OK) goto fail;

    printf("wrote %s: %zu samples of %dx%dx%d, %d classes, %s features\n", positional[2],
           dataset->count, dataset->shape.channels, dataset->shape.height, dataset->shape.width,
           dataset->num_classes, raw ? "raw [0, 1]" : "normalised");
    fedkd_dataset_destroy(&dataset);
    return 0;

fail:
    fprintf(stderr, "fedkd-idx2h5: %s\n", fedkd_error_message());
    fedkd_dataset_destroy(&dataset);
    return 1;
}
