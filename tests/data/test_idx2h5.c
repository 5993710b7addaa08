/* The fedkd-idx2h5 tool, run as a separate process on generated IDX files:
 * its HDF5 output must hold what the IDX loader reads. argv[1] is the tool. */
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../test_util.h"
#include "data_fixture.h"
#include "fedkd/data/data.h"

static const char *tool;

/* Runs the tool with `args` (NULL-terminated), stdout and stderr going to
 * scratch files; returns the exit status, or -1 if it did not exit. */
static int run_tool(const char *const *args)
{
    const char *argv[16] = {tool};
    int n = 1;
    for (; args[n - 1] && n < 15; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int out = open(fixture_path("stdout.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(fixture_path("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0 || err < 0) _exit(126);
        dup2(out, 1);
        dup2(err, 2);
        execv(tool, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

/* The whole of a scratch file as a string (static buffer). */
static const char *read_text(const char *name)
{
    static char text[8192];
    text[0] = '\0';
    FILE *file = fopen(fixture_path(name), "rb");
    if (!file) return text;
    size_t n = fread(text, 1, sizeof text - 1, file);
    text[n] = '\0';
    fclose(file);
    return text;
}

static void check_same(const fedkd_dataset *want, const fedkd_dataset *got, const char *what)
{
    CHECK(got != NULL, "%s: nothing loaded", what);
    if (!got || !want) return;
    CHECK(got->count == want->count, "%s: count %zu vs %zu", what, got->count, want->count);
    CHECK(memcmp(&got->shape, &want->shape, sizeof got->shape) == 0, "%s: shape %dx%dx%d", what,
          got->shape.channels, got->shape.height, got->shape.width);
    CHECK(got->num_classes == want->num_classes, "%s: num_classes %d vs %d", what,
          got->num_classes, want->num_classes);
    if (got->count != want->count || memcmp(&got->shape, &want->shape, sizeof got->shape) != 0)
        return;
    CHECK(memcmp(got->features, want->features,
                 want->count * fedkd_dataset_sample_floats(want) * sizeof(float)) == 0,
          "%s: features differ", what);
    CHECK(memcmp(got->labels, want->labels, want->count * sizeof(int32_t)) == 0,
          "%s: labels differ", what);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_idx2h5 PATH-TO-fedkd-idx2h5\n");
        return 1;
    }
    tool = argv[1];
    if (!fixture_make_dir("idx2h5")) {
        fprintf(stderr, "cannot create a scratch directory\n");
        return 1;
    }
    const char *images = fixture_path("images.gz"), *labels = fixture_path("labels.gz");
    const char *out = fixture_path("out.h5");
    CHECK(fixture_write_idx_pair(images, labels, 1, 9, 6, 5, 4), "write IDX fixture");

    fedkd_dataset *reference = NULL, *converted = NULL;
    CHECK(fedkd_idx_load(&reference, images, labels, 0) == FEDKD_OK, "reference: %s",
          fedkd_error_message());

    /* --raw: pixels in [0, 1] exactly as the IDX loader returns them. */
    int code = run_tool((const char *[]){images, labels, out, "--raw", NULL});
    CHECK(code == 0, "--raw exit %d, stderr: %s", code, read_text("stderr.txt"));
    CHECK(fedkd_h5data_load_all(&converted, out, 0) == FEDKD_OK, "load raw: %s",
          fedkd_error_message());
    check_same(reference, converted, "--raw");
    fedkd_dataset_destroy(&converted);

    /* Default: normalised like fedkd_fashion_mnist_load. */
    code = run_tool((const char *[]){images, labels, out, NULL});
    CHECK(code == 0, "default exit %d, stderr: %s", code, read_text("stderr.txt"));
    CHECK(strstr(read_text("stdout.txt"), "9 samples") != NULL, "summary: %s",
          read_text("stdout.txt"));
    fedkd_dataset_normalize(reference, FEDKD_FASHION_MNIST_MEAN, FEDKD_FASHION_MNIST_STD);
    CHECK(fedkd_h5data_load_all(&converted, out, 0) == FEDKD_OK, "load normalised: %s",
          fedkd_error_message());
    check_same(reference, converted, "normalised");
    fedkd_dataset_destroy(&converted);

    /* --limit and --num-classes, options before the positionals. */
    code = run_tool((const char *[]){"--limit", "3", "--num-classes", "10", images, labels, out, NULL});
    CHECK(code == 0, "--limit exit %d, stderr: %s", code, read_text("stderr.txt"));
    CHECK(fedkd_h5data_load_all(&converted, out, 0) == FEDKD_OK, "load limited");
    CHECK(converted && converted->count == 3 && converted->num_classes == 10,
          "limit 3 and 10 classes: count %zu, classes %d", converted ? converted->count : 0,
          converted ? converted->num_classes : 0);
    fedkd_dataset_destroy(&converted);
    fedkd_dataset_destroy(&reference);

    code = run_tool((const char *[]){"--help", NULL});
    CHECK(code == 0 && strstr(read_text("stdout.txt"), "Usage: fedkd-idx2h5"), "--help");

    /* Failures: non-zero exit, one line "fedkd-idx2h5: ..." naming the file,
     * and no output file left behind. */
    const char *missing = fixture_path("missing.gz");
    const char *not_written = fixture_path("not-written.h5");
    code = run_tool((const char *[]){missing, labels, not_written, NULL});
    const char *err = read_text("stderr.txt");
    CHECK(code != 0, "missing input must fail");
    CHECK(strncmp(err, "fedkd-idx2h5: ", 14) == 0 && strstr(err, missing) &&
              strchr(err, '\n') == err + strlen(err) - 1,
          "error line: %s", err);
    CHECK(access(not_written, F_OK) != 0, "no output after a failure");

    code = run_tool((const char *[]){labels, labels, not_written, NULL});
    CHECK(code != 0 && strstr(read_text("stderr.txt"), "magic"), "labels as images: %d %s", code,
          read_text("stderr.txt"));
    code = run_tool((const char *[]){images, labels, NULL});
    CHECK(code != 0 && strncmp(read_text("stderr.txt"), "fedkd-idx2h5: ", 14) == 0,
          "two arguments: %d", code);
    code = run_tool((const char *[]){images, labels, out, "--limit", "zero", NULL});
    CHECK(code != 0, "--limit zero must fail");
    code = run_tool((const char *[]){images, labels, out, "--num-classes", "2", NULL});
    CHECK(code != 0 && strstr(read_text("stderr.txt"), "--num-classes"),
          "--num-classes below the labels: %d %s", code, read_text("stderr.txt"));
    code = run_tool((const char *[]){images, labels, out, "--bogus", NULL});
    CHECK(code != 0, "unknown option must fail");

    int failed = test_failures;
    if (!failed) fixture_remove_dir();
    else {
        fprintf(stderr, "scratch files kept in %s\n", fixture_dir);
        fixture_free_paths();
    }
    return test_finish("test_idx2h5");
}
