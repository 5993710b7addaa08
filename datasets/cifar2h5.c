/* fedkd-cifar2h5: converts CIFAR-10 / CIFAR-100 binary files into the
 * project's HDF5 layout, so runs can read them with data.name=hdf5. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/data/cifar.h"
#include "fedkd/data/data.h"

static const char usage_text[] =
    "Usage: fedkd-cifar2h5 cifar10|cifar100 FILE.bin... OUT.h5 [--limit N] [--raw]\n"
    "\n"
    "Converts CIFAR binary files (the \"binary version\" of\n"
    "https://www.cs.toronto.edu/~kriz/cifar.html), concatenated in the order\n"
    "given, into the fedkd-sim HDF5 layout:\n"
    "  /features     float32 [n, 3, 32, 32]\n"
    "  /labels       int32   [n] (CIFAR-100: the fine label)\n"
    "  num_classes   int32 attribute on the root group (10 or 100)\n"
    "\n"
    "Options:\n"
    "  --limit N   keep only the first N records\n"
    "  --raw       store pixels scaled to [0, 1]; by default they are also\n"
    "              normalised per channel with the training set's mean and\n"
    "              standard deviation, exactly as fedkd-sim's own reader does\n"
    "  -h, --help  show this help and exit\n"
    "\n"
    "Example:\n"
    "  d=cifar-10-batches-bin\n"
    "  fedkd-cifar2h5 cifar10 $d/data_batch_{1,2,3,4,5}.bin cifar10-train.h5\n"
    "  fedkd-cifar2h5 cifar10 $d/test_batch.bin cifar10-test.h5\n";

static int fail_usage(const char *message, const char *argument)
{
    fprintf(stderr, "fedkd-cifar2h5: %s%s (see fedkd-cifar2h5 --help)\n", message, argument);
    return 2;
}

int main(int argc, char **argv)
{
    const char *positional[8];
    int num_positional = 0, raw = 0;
    size_t limit = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(arg, "--raw") == 0) {
            raw = 1;
        } else if (strcmp(arg, "--limit") == 0) {
            if (i + 1 >= argc) return fail_usage("missing value after ", arg);
            const char *text = argv[++i];
            char *end = NULL;
            errno = 0;
            unsigned long long value = strtoull(text, &end, 10);
            if (text[0] < '0' || text[0] > '9' || errno || *end || value < 1)
                return fail_usage("--limit expects a whole number >= 1, got ", text);
            limit = (size_t)value;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            return fail_usage("unknown option ", arg);
        } else {
            if (num_positional == 8) return fail_usage("too many files at ", arg);
            positional[num_positional++] = arg;
        }
    }
    if (num_positional < 3) return fail_usage("expected cifar10|cifar100 FILE.bin... OUT.h5", "");
    const fedkd_cifar_variant *variant = fedkd_cifar_find(positional[0]);
    if (!variant) return fail_usage("expected cifar10 or cifar100, got ", positional[0]);
    const char *out_path = positional[num_positional - 1];

    fedkd_dataset *dataset = NULL;
    fedkd_status status =
        fedkd_cifar_load_files(&dataset, variant, positional + 1, num_positional - 2, limit, raw);
    if (!status) status = fedkd_h5data_save(dataset, out_path);
    if (status) {
        fprintf(stderr, "fedkd-cifar2h5: %s\n", fedkd_error_message());
        fedkd_dataset_destroy(&dataset);
        return 1;
    }
    printf("wrote %s: %zu %s samples of 3x32x32, %d classes, %s features\n", out_path,
           dataset->count, variant->title, dataset->num_classes,
           raw ? "raw [0, 1]" : "normalised");
    fedkd_dataset_destroy(&dataset);
    return 0;
}
