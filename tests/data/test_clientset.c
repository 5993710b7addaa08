/* The client set: the public holdout is disjoint from every client and the
 * partition covers the rest; a public file that holds a test sample, an
 * empty public set and a holdout too large are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedkd/data/clientset.h"
#include "fedkd/config/config.h"
#include "fedkd/core/core.h"
#include "test_util.h"

/* `config` (zeroed at first) is loaded again and again: each load frees
 * the previous one. */
static int load_config(fedkd_config *config, const char *extra)
{
    fedkd_config_free(config);
    const char *overrides[] = {"data.name=synthetic", "data.synthetic_train=600",
                               "data.synthetic_test=100", "clients.count=5",
                               "partition.scheme=dirichlet", "public.size=120", extra};
    int n = extra ? 7 : 6;
    return fedkd_config_load(config, NULL, overrides, n) == FEDKD_OK;
}

static void check_holdout(void)
{
    fedkd_config config = {0};
    CHECK(load_config(&config, NULL), "config: %s", fedkd_error_message());
    int hosted[] = {1, 3};
    fedkd_client_set set, again, plain;
    fedkd_status status = fedkd_client_set_load(
        &config, hosted, 2, FEDKD_CLIENTSET_PUBLIC | FEDKD_CLIENTSET_LOAD_PUBLIC, &set);
    CHECK(status == FEDKD_OK, "load: %s", fedkd_error_message());
    if (status) return;
    CHECK(set.public_set && set.public_count == 120 && set.public_set->count == 120,
          "public set of %zu", set.public_count);
    /* Every training row is public or owned by exactly one client (or dropped). */
    char *seen = calloc(600, 1);
    uint32_t *public_rows = NULL;
    CHECK(fedkd_public_holdout_rows(config.seed, 600, 120, &public_rows) == FEDKD_OK, "rows");
    for (size_t i = 0; public_rows && i < 120; i++) seen[public_rows[i]] = 1;
    const fedkd_partition *p = set.partition;
    for (size_t i = 0; i < p->offsets[p->num_clients]; i++) {
        CHECK(seen[p->indices[i]] == 0, "row %u owned twice or public", p->indices[i]);
        seen[p->indices[i]] = 2;
    }
    size_t covered = 0;
    for (int r = 0; r < 600; r++) covered += seen[r] != 0;
    CHECK(covered + p->dropped == 600, "covered %zu + dropped %zu != 600", covered, p->dropped);
    CHECK(p->total == 480, "partitioned %zu rows, expected 480", p->total);
    /* The hosted clients' data are their rows; the public samples differ from them. */
    CHECK(set.num_hosted == 2 && set.data[1]->count == fedkd_partition_client_size(p, 3),
          "client 3 has %zu samples", set.data[1]->count);
    /* Deterministic, and the same partition on a rank that loads nothing. */
    CHECK(fedkd_client_set_load(&config, NULL, 0, FEDKD_CLIENTSET_PUBLIC, &again) == FEDKD_OK,
          "reload: %s", fedkd_error_message());
    CHECK(again.public_set == NULL && again.public_count == 120, "no public samples loaded");
    CHECK(again.partition->offsets[5] == p->offsets[5] &&
              memcmp(again.partition->indices, p->indices,
                     p->offsets[5] * sizeof *p->indices) == 0,
          "partition differs between loads");
    /* Without a public set the partition spans every row. */
    CHECK(fedkd_client_set_load(&config, NULL, 0, 0, &plain) == FEDKD_OK, "plain");
    CHECK(plain.partition->total == 600 && plain.public_count == 0, "plain partition of %zu",
          plain.partition->total);
    fedkd_client_set_free(&set);
    fedkd_client_set_free(&again);
    fedkd_client_set_free(&plain);
    free(seen);
    free(public_rows);
    fedkd_config_free(&config);
}

static void check_refusals(const char *dir)
{
    fedkd_config config = {0};
    fedkd_client_set set;
    CHECK(load_config(&config, "public.size=0"), "config");
    fedkd_status status = fedkd_client_set_load(&config, NULL, 0, FEDKD_CLIENTSET_PUBLIC, &set);
    CHECK(status == FEDKD_ERR_CONFIG && strstr(fedkd_error_message(), "public.size"),
          "empty holdout: %s", fedkd_error_message());
    fedkd_client_set_free(&set);
    CHECK(load_config(&config, "public.size=600"), "config");
    status = fedkd_client_set_load(&config, NULL, 0, FEDKD_CLIENTSET_PUBLIC, &set);
    CHECK(status == FEDKD_ERR_CONFIG && strstr(fedkd_error_message(), "leave none"),
          "holdout of everything: %s", fedkd_error_message());
    fedkd_client_set_free(&set);

    /* A public file made of test samples. */
    CHECK(load_config(&config, NULL), "config");
    fedkd_client_set with_test;
    CHECK(fedkd_client_set_load(&config, NULL, 0, FEDKD_CLIENTSET_LOAD_TEST, &with_test) ==
              FEDKD_OK,
          "test set: %s", fedkd_error_message());
    char path[600];
    snprintf(path, sizeof path, "%s/public.h5", dir);
    CHECK(with_test.test && fedkd_h5data_save(with_test.test, path) == FEDKD_OK, "save: %s",
          fedkd_error_message());
    fedkd_client_set_free(&with_test);
    char source[700];
    snprintf(source, sizeof source, "public.source=%s", path);
    CHECK(load_config(&config, source), "config: %s", fedkd_error_message());
    status = fedkd_client_set_load(&config, NULL, 0,
                                   FEDKD_CLIENTSET_PUBLIC | FEDKD_CLIENTSET_LOAD_PUBLIC |
                                       FEDKD_CLIENTSET_LOAD_TEST,
                                   &set);
    CHECK(status == FEDKD_ERR_CONFIG && strstr(fedkd_error_message(), "overlap the test set"),
          "overlapping public file: %s", fedkd_error_message());
    fedkd_client_set_free(&set);
    /* The same file is accepted when it is not checked against a test set
     * (a client rank): the partition then spans every training row. */
    status = fedkd_client_set_load(&config, NULL, 0,
                                   FEDKD_CLIENTSET_PUBLIC | FEDKD_CLIENTSET_LOAD_PUBLIC, &set);
    CHECK(status == FEDKD_OK && set.public_count == 100 && set.partition->total == 600,
          "public file: %s", fedkd_error_message());
    fedkd_client_set_free(&set);
    unlink(path);
    /* A missing public file is named with its key. */
    CHECK(load_config(&config, "public.source=/nonexistent/public.h5"), "config");
    status = fedkd_client_set_load(&config, NULL, 0, FEDKD_CLIENTSET_PUBLIC, &set);
    CHECK(status != FEDKD_OK && strstr(fedkd_error_message(), "public.source"),
          "missing file: %s", fedkd_error_message());
    fedkd_client_set_free(&set);
    fedkd_config_free(&config);
}

int main(void)
{
    char dir[] = "/tmp/fedkd-clientset-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    check_holdout();
    check_refusals(dir);
    rmdir(dir);
    return test_finish("clientset");
}
