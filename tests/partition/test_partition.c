/* Properties every scheme must have: disjoint, complete, ascending,
 * histograms that match the labels, minimum sizes, determinism, and a
 * different partition for a different seed. */
#include <stdio.h>

#include "../test_util.h"
#include "partition_test_helpers.h"

typedef struct scheme_case {
    const char *scheme;
    int clients;
    double alpha;
    int classes_per_client;
    double sigma;
    int min_size;
    int may_drop; /* shards with classes nobody holds */
} scheme_case;

static void check_case(const scheme_case *sc, const int32_t *labels, size_t count,
                       int num_classes, const char *label_set)
{
    char what[160];
    snprintf(what, sizeof what, "%s/%s clients=%d alpha=%g k=%d min=%d", label_set, sc->scheme,
             sc->clients, sc->alpha, sc->classes_per_client, sc->min_size);
    fedkd_partition_settings s = make_settings(sc->scheme, sc->clients, 1234);
    s.alpha = sc->alpha;
    s.classes_per_client = sc->classes_per_client;
    s.sigma = sc->sigma;
    s.min_size = sc->min_size;

    fedkd_partition *first = NULL, *second = NULL, *reseeded = NULL;
    fedkd_status status = fedkd_partition_create(&first, &s, labels, count, num_classes);
    CHECK(status == FEDKD_OK, "%s: create: %s", what, fedkd_error_message());
    if (status != FEDKD_OK) return;
    check_partition(first, &s, labels, count, num_classes, sc->may_drop, what);

    status = fedkd_partition_create(&second, &s, labels, count, num_classes);
    CHECK(status == FEDKD_OK, "%s: second create: %s", what, fedkd_error_message());
    if (second) CHECK(partitions_equal(first, second), "%s: same settings, different partition", what);

    s.seed = 1235;
    status = fedkd_partition_create(&reseeded, &s, labels, count, num_classes);
    CHECK(status == FEDKD_OK, "%s: reseeded create: %s", what, fedkd_error_message());
    if (reseeded) {
        check_partition(reseeded, &s, labels, count, num_classes, sc->may_drop, what);
        /* With one client there is only one partition. */
        if (sc->clients > 1)
            CHECK(!partitions_equal(first, reseeded),
                  "%s: seed 1234 and 1235 give the same partition", what);
        else
            CHECK(partitions_equal(first, reseeded), "%s: one client, yet seeds differ", what);
    }
    fedkd_partition_destroy(&first);
    fedkd_partition_destroy(&second);
    fedkd_partition_destroy(&reseeded);
    CHECK(first == NULL && second == NULL && reseeded == NULL, "%s: destroy NULLs", what);
}

int main(void)
{
    const size_t count = 6000;
    const int num_classes = 10;
    int32_t *balanced = make_labels(count, num_classes, 0, 7);
    int32_t *unbalanced = make_labels(count, num_classes, 1, 8);
    CHECK(balanced && unbalanced, "label allocation");
    if (!balanced || !unbalanced) return test_finish("test_partition");

    const scheme_case cases[] = {
        {"iid", 10, 0.5, 2, 0.0, 0, 0},
        {"iid", 7, 0.5, 2, 0.0, 100, 0},
        {"iid", 1, 0.5, 2, 0.0, 0, 0},
        {"dirichlet", 10, 0.5, 2, 0.0, 10, 0},
        {"dirichlet", 20, 1.0, 2, 0.0, 50, 0},
        {"dirichlet", 10, 0.1, 2, 0.0, 0, 0},
        {"shards", 10, 0.5, 1, 0.0, 0, 0},
        {"shards", 10, 0.5, 2, 0.0, 10, 0},
        {"shards", 20, 0.5, 3, 0.0, 0, 0},
        {"shards", 5, 0.5, 1, 0.0, 0, 1},  /* 5 of 10 classes held */
        {"shards", 3, 0.5, 2, 0.0, 0, 1},  /* 6 of 10 classes held */
        {"quantity", 10, 0.5, 2, 0.0, 10, 0},
        {"quantity", 25, 0.2, 2, 0.0, 0, 0},
        {"feature-noise", 10, 0.5, 2, 1.0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case(&cases[i], balanced, count, num_classes, "balanced");
        check_case(&cases[i], unbalanced, count, num_classes, "unbalanced");
    }

    /* Shards with uncovered classes must actually drop them. */
    fedkd_partition_settings s = make_settings("shards", 5, 99);
    s.classes_per_client = 1;
    fedkd_partition *p = NULL;
    CHECK(fedkd_partition_create(&p, &s, balanced, count, num_classes) == FEDKD_OK, "shards 5x1: %s",
          fedkd_error_message());
    if (p) {
        int held = 0;
        for (int k = 0; k < num_classes; k++) {
            size_t in_class = 0;
            for (int c = 0; c < p->num_clients; c++)
                in_class += p->histograms[(size_t)c * (size_t)num_classes + (size_t)k];
            if (in_class) held++;
        }
        CHECK(held == 5, "shards 5 clients x 1 class: %d classes held, expected 5", held);
        CHECK(p->dropped == count / 2, "shards 5x1 on balanced labels: dropped %zu, expected %zu",
              p->dropped, count / 2);
    }
    fedkd_partition_destroy(&p);

    /* iid sizes differ by at most one. */
    s = make_settings("iid", 7, 5);
    CHECK(fedkd_partition_create(&p, &s, unbalanced, count, num_classes) == FEDKD_OK, "iid 7: %s",
          fedkd_error_message());
    if (p) {
        size_t smallest = count, largest = 0;
        for (int c = 0; c < p->num_clients; c++) {
            size_t size = fedkd_partition_client_size(p, c);
            smallest = size < smallest ? size : smallest;
            largest = size > largest ? size : largest;
        }
        CHECK(largest - smallest <= 1, "iid sizes %zu..%zu differ by more than one", smallest,
              largest);
    }
    fedkd_partition_destroy(&p);

    free(balanced);
    free(unbalanced);
    return test_finish("test_partition");
}
