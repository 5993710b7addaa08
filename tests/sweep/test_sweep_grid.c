/* Grid files without MPI: the order of points, the config of a point, the
 * base file relative to the grid, the fingerprint, and every bad grid with
 * the words its message must contain. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fedkd/experiments/sweep.h"
#include "../test_util.h"

static char work[256];

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", work, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static fedkd_status load(fedkd_sweep_grid **grid, const char *name, int world_size,
                         const char *override)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", work, name);
    const char *overrides[1] = {override};
    return fedkd_sweep_grid_load(grid, path, overrides, override ? 1 : 0, world_size);
}

/* The grid in `text` must fail to load with a message containing `want`. */
static void expect_error(const char *text, int world_size, const char *want, const char *override)
{
    write_file("bad.json", text);
    fedkd_sweep_grid *grid = NULL;
    fedkd_status status = load(&grid, "bad.json", world_size, override);
    CHECK(status != FEDKD_OK, "loaded %s", text);
    CHECK(grid == NULL, "a failed load returned a grid");
    CHECK(strstr(fedkd_error_message(), want) != NULL, "message for %s lacks \"%s\": %s", text,
          want, fedkd_error_message());
    fedkd_sweep_grid_destroy(&grid);
    fedkd_error_clear();
}

static const char base_text[] =
    "{\"data\": {\"name\": \"synthetic\"}, \"clients\": {\"count\": 5}, \"rounds\": 2}\n";

static void test_points(void)
{
    write_file("grid.json",
               "{\"base\": \"configs/base.json\", \"group_size\": 2, \"output\": \"out/x/\",\n"
               " \"grid\": {\"kd.temperature\": [1, 2, 4], \"partition.scheme\": [\"iid\", \"shards\"]}}\n");
    fedkd_sweep_grid *grid = NULL;
    fedkd_status status = load(&grid, "grid.json", 4, NULL);
    CHECK(status == FEDKD_OK, "load: %s", fedkd_error_message());
    if (status) return;
    CHECK(fedkd_sweep_grid_num_points(grid) == 6, "points %d", fedkd_sweep_grid_num_points(grid));
    CHECK(fedkd_sweep_grid_num_keys(grid) == 2, "keys");
    CHECK(strcmp(fedkd_sweep_grid_key(grid, 1), "partition.scheme") == 0, "key order");
    CHECK(fedkd_sweep_grid_group_size(grid) == 2, "group size");
    CHECK(strcmp(fedkd_sweep_grid_output(grid), "out/x") == 0, "output %s",
          fedkd_sweep_grid_output(grid));
    /* First key slowest: point 3 is (T = 2, shards). */
    const double temperatures[6] = {1, 1, 2, 2, 4, 4};
    for (int p = 0; p < 6; p++) {
        fedkd_config config;
        status = fedkd_sweep_point_config(grid, p, &config);
        CHECK(status == FEDKD_OK, "point %d config: %s", p, fedkd_error_message());
        if (status) continue;
        CHECK(config.kd.temperature == temperatures[p], "point %d temperature %g", p,
              config.kd.temperature);
        CHECK(strcmp(config.partition.scheme, p % 2 ? "shards" : "iid") == 0, "point %d scheme %s",
              p, config.partition.scheme);
        CHECK(config.rounds == 2 && config.clients.count == 5, "point %d lost the base", p);
        char dir[64];
        snprintf(dir, sizeof dir, "out/x/point-%04d", p);
        CHECK(strcmp(config.run.dir, dir) == 0, "point %d run.dir %s", p, config.run.dir);
        fedkd_config_free(&config);
    }
    CHECK(fedkd_sweep_point_value(grid, 6, 0) == NULL, "point beyond the grid");
    fedkd_config config;
    CHECK(fedkd_sweep_point_config(grid, 6, &config) != FEDKD_OK, "config beyond the grid");
    fedkd_error_clear();
    fedkd_sweep_grid_destroy(&grid);
    CHECK(grid == NULL, "destroy NULLs the pointer");
}

static void fingerprint_of(const char *text, const char *override, char out[17])
{
    write_file("fp.json", text);
    fedkd_sweep_grid *grid = NULL;
    out[0] = '\0';
    if (load(&grid, "fp.json", 4, override) == FEDKD_OK)
        snprintf(out, 17, "%s", fedkd_sweep_grid_fingerprint(grid));
    CHECK(grid != NULL, "fingerprint grid did not load: %s", fedkd_error_message());
    fedkd_sweep_grid_destroy(&grid);
}

static void test_fingerprint(void)
{
    char a[17], b[17], c[17], d[17], e[17], f[17];
    fingerprint_of("{\"base\": \"configs/base.json\", \"group_size\": 2, \"grid\": {\"seed\": [1, 2]}}", NULL, a);
    fingerprint_of("{\"base\": \"configs/base.json\", \"group_size\": 4, \"output\": \"elsewhere\", "
                   "\"grid\": {\"seed\": [1, 2]}}", NULL, b);
    fingerprint_of("{\"base\": \"configs/base.json\", \"grid\": {\"seed\": [1, 3]}}", NULL, c);
    fingerprint_of("{\"base\": \"configs/base.json\", \"grid\": {\"seed\": [1, 2]}}", "rounds=3", d);
    fingerprint_of("{\"base\": {\"data\": {\"name\": \"synthetic\"}, \"clients\": {\"count\": 5}, "
                   "\"rounds\": 2}, \"grid\": {\"seed\": [1, 2]}}", NULL, e);
    fingerprint_of("{\"base\": \"configs/base.json\", \"grid\": {\"seed\": [1, 2]}}", "run.dir=zz", f);
    CHECK(strlen(a) == 16, "fingerprint %s", a);
    CHECK(strcmp(a, b) == 0, "group size or output changed the fingerprint");
    CHECK(strcmp(a, c) != 0, "another value kept the fingerprint");
    CHECK(strcmp(a, d) != 0, "an override kept the fingerprint");
    CHECK(strcmp(a, e) == 0, "the same base inline changed the fingerprint");
    CHECK(strcmp(a, f) == 0, "run.dir changed the fingerprint");
}

static void test_defaults(void)
{
    write_file("my-grid.json", "{\"grid\": {\"seed\": [7]}}");
    fedkd_sweep_grid *grid = NULL;
    CHECK(load(&grid, "my-grid.json", 3, NULL) == FEDKD_OK, "defaults: %s", fedkd_error_message());
    if (!grid) return;
    CHECK(strcmp(fedkd_sweep_grid_output(grid), "runs/sweep-my-grid") == 0, "default output %s",
          fedkd_sweep_grid_output(grid));
    CHECK(fedkd_sweep_grid_group_size(grid) == 3, "default group size is the world");
    fedkd_sweep_grid_destroy(&grid);

    /* One process per group plays server and clients, as fedkd-sim at -np 1. */
    write_file("ones.json", "{\"base\": \"configs/base.json\", \"group_size\": 1, \"grid\": {\"seed\": [1]}}");
    CHECK(load(&grid, "ones.json", 4, NULL) == FEDKD_OK, "group_size 1: %s", fedkd_error_message());
    fedkd_sweep_grid_destroy(&grid);

    /* A combination that cannot load is not a grid error: it becomes a
     * failed row when its point runs. */
    write_file("combo.json", "{\"base\": \"configs/base.json\", \"group_size\": 2, "
               "\"grid\": {\"clients.per_round\": [4], \"clients.count\": [3, 6]}}");
    CHECK(load(&grid, "combo.json", 2, NULL) == FEDKD_OK, "combination: %s", fedkd_error_message());
    if (grid) {
        fedkd_config config;
        CHECK(fedkd_sweep_point_config(grid, 0, &config) != FEDKD_OK, "4 per round of 3 loaded");
        CHECK(strstr(fedkd_error_message(), "clients.per_round") != NULL, "message %s",
              fedkd_error_message());
        fedkd_error_clear();
        CHECK(fedkd_sweep_point_config(grid, 1, &config) == FEDKD_OK, "4 of 6: %s",
              fedkd_error_message());
        fedkd_config_free(&config);
        fedkd_sweep_grid_destroy(&grid);
    }
}

static void test_errors(void)
{
    const char *base = "\"base\": \"configs/base.json\"";
    char text[512];
#define GRID(...) (snprintf(text, sizeof text, __VA_ARGS__), text)
    expect_error(GRID("{%s, \"grid\": {\"kd.temprature\": [1, 2]}}", base), 1,
                 "bad.json: grid key `kd.temprature`, value 1: unknown config key `kd.temprature`; did you mean `kd.temperature`?", NULL);
    expect_error(GRID("{%s, \"grid\": {\"kd.weight\": []}}", base), 1, "`kd.weight`: the list of values is empty", NULL);
    expect_error(GRID("{%s, \"grid\": {\"kd.weight\": 0.5}}", base), 1, "expected a list of values", NULL);
    expect_error(GRID("{%s, \"grid\": {\"seed\": [1, 2, 1]}}", base), 1, "value 1 is listed twice", NULL);
    expect_error(GRID("{%s, \"grid\": {\"kd.weight\": [0.5, 1.5]}}", base), 1, "value 1.5: config key `kd.weight`", NULL);
    expect_error(GRID("{%s, \"grid\": {\"partition.scheme\": [\"iid\", \"stripes\"]}}", base), 1, "partition.scheme", NULL);
    expect_error(GRID("{%s, \"grid\": {\"seed\": [1], \"seed\": [2]}}", base), 1, "appears twice", NULL);
    expect_error(GRID("{%s, \"grid\": {\"run.dir\": [\"a\", \"b\"]}}", base), 1, "sets run.dir", NULL);
    expect_error(GRID("{%s, \"grid\": {}}", base), 1, "`grid` is empty", NULL);
    expect_error(GRID("{%s}", base), 1, "`grid`: expected an object", NULL);
    expect_error(GRID("{%s, \"grids\": {\"seed\": [1]}}", base), 1, "unknown key `grids`", NULL);
    expect_error(GRID("{%s, \"group_size\": 3, \"grid\": {\"seed\": [1]}}", base), 4,
                 "`group_size` 3 does not divide the 4 MPI process(es)", NULL);
    expect_error(GRID("{%s, \"group_size\": 8, \"grid\": {\"seed\": [1]}}", base), 4, "does not divide", NULL);
    expect_error(GRID("{%s, \"group_size\": 0, \"grid\": {\"seed\": [1]}}", base), 4, "`group_size`: expected a whole number >= 1", NULL);
    expect_error(GRID("{%s, \"group_size\": 1.5, \"grid\": {\"seed\": [1]}}", base), 3, "whole number", NULL);
    expect_error(GRID("{%s, \"group_size\": 4, \"grid\": {\"clients.count\": [5, 2]}}", base), 4,
                 "leaves client ranks without clients: each group has 3 client rank(s) but point 1 has clients.count = 2", NULL);
    expect_error(GRID("{%s, \"output\": 3, \"grid\": {\"seed\": [1]}}", base), 1, "`output`", NULL);
    expect_error(GRID("{\"base\": \"nowhere.json\", \"grid\": {\"seed\": [1]}}"), 1, "nowhere.json", NULL);
    expect_error(GRID("{\"base\": {\"local\": {\"lrr\": 0.1}}, \"grid\": {\"seed\": [1]}}"), 1,
                 "bad.json: base config: unknown config key `local.lrr`; did you mean `local.lr`?", NULL);
    expect_error(GRID("{\"base\": 42, \"grid\": {\"seed\": [1]}}"), 1, "`base`", NULL);
    expect_error(GRID("{%s, \"grid\": {\"seed\": [1]}}", base), 1, "--set", "rounds=0");
    expect_error(GRID("{%s,\n \"grid\": {\"seed\": [1,]}}", base), 1, "bad.json:2:", NULL);
    expect_error(GRID("[1, 2]"), 1, "expected a JSON object", NULL);
#undef GRID
    fedkd_sweep_grid *grid = NULL;
    CHECK(load(&grid, "missing.json", 1, NULL) != FEDKD_OK, "a missing grid file loaded");
    CHECK(strstr(fedkd_error_message(), "missing.json") != NULL, "message %s", fedkd_error_message());
    fedkd_error_clear();
}

/* Every file in configs/ loads: a config as a config, a grid-*.json as a
 * grid for 16 processes (its keys, values and group size). A renamed key
 * breaks this test rather than a user's sweep. */
static void test_shipped_configs(const char *dir)
{
    DIR *listing = opendir(dir);
    CHECK(listing != NULL, "cannot list %s", dir);
    if (!listing) return;
    int grids = 0, configs = 0;
    for (struct dirent *entry; (entry = readdir(listing));) {
        size_t n = strlen(entry->d_name);
        if (n < 6 || strcmp(entry->d_name + n - 5, ".json") != 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        fedkd_status status;
        if (strncmp(entry->d_name, "grid-", 5) == 0) {
            fedkd_sweep_grid *grid = NULL;
            status = fedkd_sweep_grid_load(&grid, path, NULL, 0, 16);
            fedkd_sweep_grid_destroy(&grid);
            grids++;
        } else {
            fedkd_config config;
            status = fedkd_config_load(&config, path, NULL, 0);
            fedkd_config_free(&config);
            configs++;
        }
        CHECK(status == FEDKD_OK, "%s: %s", path, fedkd_error_message());
        fedkd_error_clear();
    }
    closedir(listing);
    CHECK(grids >= 3 && configs >= 5, "%s: %d grids and %d configs", dir, grids, configs);
}

int main(int argc, char **argv)
{
    snprintf(work, sizeof work, "/tmp/fedkd-sweep-grid.XXXXXX");
    if (!mkdtemp(work)) return 1;
    char configs[300];
    snprintf(configs, sizeof configs, "%s/configs", work);
    mkdir(configs, 0777);
    write_file("configs/base.json", base_text);
    test_points();
    test_fingerprint();
    test_defaults();
    test_errors();
    if (argc > 1) test_shipped_configs(argv[1]);
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", work);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", work);
    return test_finish("test_sweep_grid");
}
