/* Bad settings and data are refused with a message naming the key, and the
 * JSON summary reads back to the same sizes and histograms. */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "../test_util.h"
#include "partition_test_helpers.h"

static const size_t COUNT = 6000;
static const int CLASSES = 10;

/* Expects create to fail with `expected_status` and a message containing
 * every one of the given fragments; *out must stay NULL. */
static void expect_failure(const fedkd_partition_settings *s, const int32_t *labels, size_t count,
                           fedkd_status expected_status, const char *fragment,
                           const char *fragment2, const char *what)
{
    fedkd_partition *p = (fedkd_partition *)&p; /* must be overwritten with NULL */
    fedkd_error_clear();
    fedkd_status status = fedkd_partition_create(&p, s, labels, count, CLASSES);
    CHECK(status == expected_status, "%s: status %s, expected %s (message: %s)", what,
          fedkd_status_name(status), fedkd_status_name(expected_status), fedkd_error_message());
    CHECK(p == NULL, "%s: out not NULL after failure", what);
    if (status == FEDKD_OK) fedkd_partition_destroy(&p);
    const char *message = fedkd_error_message();
    CHECK(strstr(message, fragment) != NULL, "%s: message \"%s\" lacks \"%s\"", what, message,
          fragment);
    if (fragment2)
        CHECK(strstr(message, fragment2) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
              message, fragment2);
}

static void test_errors(const int32_t *labels)
{
    fedkd_partition_settings s;
    const double bad_alphas[] = {0.0, -1.0, NAN, INFINITY};
    const char *alpha_schemes[] = {"dirichlet", "quantity"};
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < 4; j++) {
            char what[64];
            snprintf(what, sizeof what, "%s alpha=%g", alpha_schemes[i], bad_alphas[j]);
            s = make_settings(alpha_schemes[i], 10, 1);
            s.alpha = bad_alphas[j];
            expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "config key `partition.alpha`",
                           "expected a number > 0", what);
        }
    }

    s = make_settings("shards", 10, 1);
    s.classes_per_client = 11;
    expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "config key `partition.classes_per_client`",
                   "expected 1..10", "shards k=11");
    s.classes_per_client = 0;
    expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "`partition.classes_per_client`", "got 0",
                   "shards k=0");
    s.classes_per_client = -3;
    expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "`partition.classes_per_client`", "got -3",
                   "shards k=-3");

    const char *schemes[] = {"iid", "dirichlet", "shards", "quantity", "feature-noise"};
    for (size_t i = 0; i < 5; i++) {
        s = make_settings(schemes[i], 50, 1);
        expect_failure(&s, labels, 40, FEDKD_ERR_CONFIG, "config key `clients.count`",
                       "training set has 40", schemes[i]);
        s = make_settings(schemes[i], 10, 1);
        s.min_size = 1000;
        expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "partition.min_size=1000", "6000",
                       schemes[i]);
        s = make_settings(schemes[i], 0, 1);
        expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "config key `clients.count`", "got 0",
                       schemes[i]);
        s = make_settings(schemes[i], 10, 1);
        s.min_size = -1;
        expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "config key `partition.min_size`",
                       "got -1", schemes[i]);
        s = make_settings(schemes[i], 10, 1);
        s.sigma = -0.5;
        expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "config key `partition.sigma`",
                       "got -0.5", schemes[i]);
    }

    /* Feasible in total (50 x 100 <= 6000) but not for so skewed a Dirichlet. */
    s = make_settings("dirichlet", 50, 1);
    s.alpha = 0.01;
    s.min_size = 100;
    expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "partition.min_size=100",
                   "after 1000 draws", "dirichlet alpha=0.01 min_size=100");
    /* Shards whose clients would be below min_size: 10 clients x 1 class of 600 rows. */
    s = make_settings("shards", 10, 1);
    s.classes_per_client = 1;
    s.min_size = 500;
    fedkd_partition *p = NULL;
    CHECK(fedkd_partition_create(&p, &s, labels, COUNT, CLASSES) == FEDKD_OK,
          "shards 10x1 min_size=500 fits: %s", fedkd_error_message());
    fedkd_partition_destroy(&p);
    s.num_clients = 11; /* one class is now shared by two clients: 300 each */
    expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "partition.min_size=500", "client",
                   "shards 11x1 min_size=500");

    /* 15 clients each holding all 10 classes, but a class has only 2 rows. */
    int32_t two_per_class[20];
    for (int i = 0; i < 20; i++) two_per_class[i] = i % CLASSES;
    s = make_settings("shards", 15, 1);
    s.classes_per_client = 10;
    expect_failure(&s, two_per_class, 20, FEDKD_ERR_CONFIG, "partition.classes_per_client",
                   "15 clients hold it", "shards with more holders than rows");
    /* A class without rows cannot be one of a client's k classes. */
    int32_t nine_classes[20];
    for (int i = 0; i < 20; i++) nine_classes[i] = i % 9;
    s = make_settings("shards", 2, 1);
    s.classes_per_client = 10;
    expect_failure(&s, nine_classes, 20, FEDKD_ERR_CONFIG,
                   "config key `partition.classes_per_client`", "only 9 of", "shards k=10 of 9 present");
    s.classes_per_client = 9;
    CHECK(fedkd_partition_create(&p, &s, nine_classes, 20, CLASSES) == FEDKD_OK,
          "shards k=9 with 9 present classes: %s", fedkd_error_message());
    fedkd_partition_destroy(&p);

    s = make_settings("fancy", 10, 1);
    expect_failure(&s, labels, COUNT, FEDKD_ERR_CONFIG, "config key `partition.scheme`",
                   "unknown scheme `fancy`", "unknown scheme");
    CHECK(strstr(fedkd_error_message(),
                 "expected iid, dirichlet, shards, quantity or feature-noise") != NULL,
          "unknown scheme message lists the schemes: %s", fedkd_error_message());

    int32_t *bad = malloc(COUNT * sizeof *bad);
    if (bad) {
        memcpy(bad, labels, COUNT * sizeof *bad);
        bad[17] = CLASSES;
        s = make_settings("iid", 10, 1);
        expect_failure(&s, bad, COUNT, FEDKD_ERR_FORMAT, "row 17", "label 10", "label 10");
        bad[17] = labels[17];
        bad[4242] = -1;
        s = make_settings("shards", 10, 1);
        expect_failure(&s, bad, COUNT, FEDKD_ERR_FORMAT, "row 4242", "label -1", "label -1");
    }
    free(bad);
}

static void test_table(void)
{
    const char *names[] = {"iid", "dirichlet", "shards", "quantity", "feature-noise"};
    size_t rows = 0;
    while (fedkd_partitioners[rows]) rows++;
    CHECK(rows == 5, "partitioner table has %zu rows, expected 5", rows);
    for (size_t i = 0; i < 5; i++) {
        const fedkd_partitioner *found = fedkd_partitioner_find(names[i]);
        CHECK(found && strcmp(found->name, names[i]) == 0 && found->assign,
              "fedkd_partitioner_find(%s)", names[i]);
    }
    CHECK(fedkd_partitioner_find("IID") == NULL, "find is exact");
    CHECK(fedkd_partitioner_find(NULL) == NULL, "find(NULL)");

    fedkd_partition_settings d = fedkd_partition_default_settings();
    CHECK(fedkd_partitioner_find(d.scheme) != NULL, "default scheme %s is in the table", d.scheme);
    CHECK(d.num_clients >= 1 && d.alpha > 0.0 && d.min_size >= 0, "default settings are valid");
}

static const cJSON *item_of(const cJSON *object, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(object, key);
}

static void check_json_round_trip(const fedkd_partition *p, const char *what)
{
    cJSON *json = fedkd_partition_to_json(p);
    CHECK(json != NULL, "%s: to_json", what);
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    cJSON *parsed = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(parsed != NULL, "%s: the JSON parses", what);
    if (!parsed) return;

    const cJSON *scheme = item_of(parsed, "scheme");
    CHECK(cJSON_IsString(scheme) && strcmp(scheme->valuestring, p->scheme) == 0, "%s: scheme",
          what);
    const cJSON *total = item_of(parsed, "total"), *dropped = item_of(parsed, "dropped");
    const cJSON *classes_count = item_of(parsed, "num_classes");
    CHECK(cJSON_IsNumber(total) && total->valuedouble == (double)p->total, "%s: total", what);
    CHECK(cJSON_IsNumber(dropped) && dropped->valuedouble == (double)p->dropped, "%s: dropped",
          what);
    CHECK(cJSON_IsNumber(classes_count) && classes_count->valueint == p->num_classes,
          "%s: num_classes", what);
    const cJSON *clients = item_of(parsed, "clients");
    CHECK(cJSON_IsArray(clients) && cJSON_GetArraySize(clients) == p->num_clients,
          "%s: clients array of %d", what, p->num_clients);
    if (!cJSON_IsArray(clients) || cJSON_GetArraySize(clients) != p->num_clients) {
        cJSON_Delete(parsed);
        return;
    }
    int wrong = 0;
    for (int c = 0; c < p->num_clients; c++) {
        const cJSON *client = cJSON_GetArrayItem(clients, c);
        const cJSON *id = item_of(client, "client"), *size = item_of(client, "size");
        const cJSON *classes = item_of(client, "classes"), *sigma = item_of(client, "noise_sigma");
        if (!cJSON_IsNumber(id) || id->valueint != c) wrong++;
        if (!cJSON_IsNumber(size) ||
            size->valuedouble != (double)fedkd_partition_client_size(p, c))
            wrong++;
        if (!cJSON_IsNumber(sigma) || fabs(sigma->valuedouble - p->noise_sigma[c]) > 1e-12)
            wrong++;
        if (!cJSON_IsArray(classes) || cJSON_GetArraySize(classes) != p->num_classes) {
            wrong++;
            continue;
        }
        for (int k = 0; k < p->num_classes; k++) {
            const cJSON *n = cJSON_GetArrayItem(classes, k);
            if (!cJSON_IsNumber(n) ||
                n->valuedouble != (double)p->histograms[(size_t)c * (size_t)p->num_classes + (size_t)k])
                wrong++;
        }
    }
    CHECK(wrong == 0, "%s: %d client fields differ after the JSON round trip", what, wrong);
    cJSON_Delete(parsed);
}

static void test_json(const int32_t *labels)
{
    const char *schemes[] = {"dirichlet", "shards", "feature-noise"};
    for (size_t i = 0; i < 3; i++) {
        fedkd_partition_settings s = make_settings(schemes[i], 4, 3);
        s.classes_per_client = 2; /* 4 x 2 slots over 10 classes: some dropped */
        s.sigma = 0.75;
        fedkd_partition *p = NULL;
        CHECK(fedkd_partition_create(&p, &s, labels, COUNT, CLASSES) == FEDKD_OK, "%s: %s",
              schemes[i], fedkd_error_message());
        if (!p) continue;
        if (i == 1) CHECK(p->dropped > 0, "shards 4x2 drops classes");
        check_json_round_trip(p, schemes[i]);
        fedkd_partition_destroy(&p);
    }
    CHECK(fedkd_partition_to_json(NULL) == NULL, "to_json(NULL)");
}

int main(void)
{
    int32_t *labels = make_labels(COUNT, CLASSES, 0, 21);
    CHECK(labels != NULL, "label allocation");
    if (!labels) return test_finish("test_partition_errors");
    test_errors(labels);
    test_table();
    test_json(labels);
    fedkd_partition_destroy(NULL);
    free(labels);
    return test_finish("test_partition_errors");
}
