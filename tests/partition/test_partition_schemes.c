/* What each scheme is for: shards give exactly k classes, dirichlet's skew
 * follows alpha, quantity skews sizes but not labels, feature-noise adds
 * noise of the stated size. */
#include <stdio.h>

#include "../test_util.h"
#include "partition_test_helpers.h"

static const size_t COUNT = 6000;
static const int CLASSES = 10;

static void test_shards(const int32_t *labels, const char *label_set)
{
    const int ks[] = {1, 2, 3};
    const int client_counts[] = {10, 20};
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = 0; j < 2; j++) {
            fedkd_partition_settings s = make_settings("shards", client_counts[j], 31);
            s.classes_per_client = ks[i];
            fedkd_partition *p = NULL;
            fedkd_status status = fedkd_partition_create(&p, &s, labels, COUNT, CLASSES);
            CHECK(status == FEDKD_OK, "%s shards k=%d clients=%d: %s", label_set, ks[i],
                  client_counts[j], fedkd_error_message());
            if (!p) continue;
            int wrong = 0;
            for (int c = 0; c < p->num_clients; c++) {
                int nonzero = 0;
                for (int k = 0; k < CLASSES; k++)
                    if (p->histograms[(size_t)c * (size_t)CLASSES + (size_t)k]) nonzero++;
                if (nonzero != ks[i]) wrong++;
            }
            CHECK(wrong == 0, "%s shards k=%d clients=%d: %d clients without exactly k classes",
                  label_set, ks[i], client_counts[j], wrong);
            /* A class is split evenly among its holders. */
            int uneven = 0;
            for (int k = 0; k < CLASSES; k++) {
                uint32_t low = UINT32_MAX, high = 0;
                for (int c = 0; c < p->num_clients; c++) {
                    uint32_t n = p->histograms[(size_t)c * (size_t)CLASSES + (size_t)k];
                    if (!n) continue;
                    low = n < low ? n : low;
                    high = n > high ? n : high;
                }
                if (high > 0 && high - low > 1) uneven++;
            }
            CHECK(uneven == 0, "%s shards k=%d clients=%d: %d classes split unevenly", label_set,
                  ks[i], client_counts[j], uneven);
            fedkd_partition_destroy(&p);
        }
    }
}

static void global_shares(const int32_t *labels, size_t count, double *shares)
{
    for (int k = 0; k < CLASSES; k++) shares[k] = 0.0;
    for (size_t i = 0; i < count; i++) shares[labels[i]] += 1.0;
    for (int k = 0; k < CLASSES; k++) shares[k] /= (double)count;
}

/* Largest |client share - global share| over clients of at least min_size samples and classes. */
static double worst_share_gap(const fedkd_partition *p, const double *global, size_t min_size)
{
    double worst = 0.0;
    for (int c = 0; c < p->num_clients; c++) {
        if (fedkd_partition_client_size(p, c) < min_size) continue;
        for (int k = 0; k < CLASSES; k++) {
            double gap = fabs(class_share(p, c, k) - global[k]);
            worst = gap > worst ? gap : worst;
        }
    }
    return worst;
}

static double mean_max_share(const fedkd_partition *p)
{
    double total = 0.0;
    for (int c = 0; c < p->num_clients; c++) {
        double best = 0.0;
        for (int k = 0; k < CLASSES; k++) best = fmax(best, class_share(p, c, k));
        total += best;
    }
    return total / (double)p->num_clients;
}

static void test_dirichlet(const int32_t *labels, const char *label_set)
{
    double global[10];
    global_shares(labels, COUNT, global);

    fedkd_partition_settings s = make_settings("dirichlet", 10, 77);
    s.alpha = 1e6;
    fedkd_partition *p = NULL;
    CHECK(fedkd_partition_create(&p, &s, labels, COUNT, CLASSES) == FEDKD_OK,
          "%s dirichlet alpha=1e6: %s", label_set, fedkd_error_message());
    if (p) {
        double gap = worst_share_gap(p, global, 0);
        CHECK(gap <= 0.05, "%s dirichlet alpha=1e6: a client's class share is %.3f from the global one",
              label_set, gap);
    }
    fedkd_partition_destroy(&p);

    s.alpha = 0.1;
    CHECK(fedkd_partition_create(&p, &s, labels, COUNT, CLASSES) == FEDKD_OK,
          "%s dirichlet alpha=0.1: %s", label_set, fedkd_error_message());
    if (p) {
        double skew = mean_max_share(p);
        CHECK(skew > 0.5, "%s dirichlet alpha=0.1: mean largest class share %.3f, expected > 0.5",
              label_set, skew);
    }
    fedkd_partition_destroy(&p);

    /* iid as the contrast: the largest share stays near the largest global share. */
    s = make_settings("iid", 10, 77);
    CHECK(fedkd_partition_create(&p, &s, labels, COUNT, CLASSES) == FEDKD_OK, "%s iid: %s",
          label_set, fedkd_error_message());
    if (p) {
        double gap = worst_share_gap(p, global, 0);
        CHECK(gap <= 0.05, "%s iid: class share %.3f from the global one", label_set, gap);
    }
    fedkd_partition_destroy(&p);

    /* A min_size that the first draws will miss is met by redrawing. */
    s = make_settings("dirichlet", 10, 78);
    s.alpha = 0.3;
    s.min_size = 250;
    CHECK(fedkd_partition_create(&p, &s, labels, COUNT, CLASSES) == FEDKD_OK,
          "%s dirichlet alpha=0.3 min_size=250: %s", label_set, fedkd_error_message());
    if (p) {
        size_t smallest = COUNT;
        for (int c = 0; c < p->num_clients; c++) {
            size_t size = fedkd_partition_client_size(p, c);
            smallest = size < smallest ? size : smallest;
        }
        CHECK(smallest >= 250, "%s dirichlet min_size=250: smallest client %zu", label_set,
              smallest);
    }
    fedkd_partition_destroy(&p);
}

static void test_quantity(const int32_t *labels, size_t count, const char *label_set)
{
    double global[10];
    global_shares(labels, count, global);
    fedkd_partition_settings s = make_settings("quantity", 10, 5);
    s.alpha = 0.5;
    s.min_size = 20;
    fedkd_partition *p = NULL;
    CHECK(fedkd_partition_create(&p, &s, labels, count, CLASSES) == FEDKD_OK, "%s quantity: %s",
          label_set, fedkd_error_message());
    if (!p) return;
    size_t smallest = count, largest = 0;
    int big_clients = 0;
    for (int c = 0; c < p->num_clients; c++) {
        size_t size = fedkd_partition_client_size(p, c);
        smallest = size < smallest ? size : smallest;
        largest = size > largest ? size : largest;
        if (size >= 2000) big_clients++;
    }
    CHECK(smallest >= 20, "%s quantity: smallest client %zu < min_size 20", label_set, smallest);
    CHECK((double)largest > 3.0 * (double)smallest,
          "%s quantity alpha=0.5: sizes %zu..%zu, expected a ratio > 3", label_set, smallest,
          largest);
    CHECK(big_clients >= 1, "%s quantity: no client with >= 2000 samples to check labels on",
          label_set);
    /* Labels stay iid: a client of >= 2000 samples has class shares within
     * 0.05 of the global ones (binomial std <= 0.011, so 0.05 is > 4 std). */
    double gap = worst_share_gap(p, global, 2000);
    CHECK(gap <= 0.05, "%s quantity: a big client's class share is %.3f from the global one",
          label_set, gap);
    fedkd_partition_destroy(&p);
}

static void test_feature_noise(const int32_t *labels)
{
    fedkd_partition_settings s = make_settings("feature-noise", 10, 9);
    s.sigma = 2.0;
    fedkd_partition *p = NULL;
    CHECK(fedkd_partition_create(&p, &s, labels, COUNT, CLASSES) == FEDKD_OK, "feature-noise: %s",
          fedkd_error_message());
    if (!p) return;
    for (int c = 0; c < 10; c++)
        CHECK(fabs(p->noise_sigma[c] - 2.0 * c / 10.0) <= 1e-12, "noise_sigma[%d] = %g, expected %g",
              c, p->noise_sigma[c], 2.0 * c / 10.0);

    /* Same split as iid with the same seed. */
    fedkd_partition_settings iid_settings = s;
    strcpy(iid_settings.scheme, "iid");
    fedkd_partition *iid = NULL;
    CHECK(fedkd_partition_create(&iid, &iid_settings, labels, COUNT, CLASSES) == FEDKD_OK,
          "iid: %s", fedkd_error_message());
    if (iid) {
        CHECK(memcmp(iid->offsets, p->offsets, 11 * sizeof *p->offsets) == 0 &&
                  memcmp(iid->indices, p->indices, COUNT * sizeof *p->indices) == 0,
              "feature-noise does not split like iid");
        for (int c = 0; c < 10; c++)
            CHECK(iid->noise_sigma[c] == 0.0, "iid noise_sigma[%d] = %g", c, iid->noise_sigma[c]);
    }
    fedkd_partition_destroy(&iid);

    const size_t samples = 20000, floats = 10, n = samples * floats;
    float *base = malloc(n * sizeof *base);
    float *noisy = malloc(n * sizeof *noisy);
    float *again = malloc(n * sizeof *again);
    float *other = malloc(n * sizeof *other);
    CHECK(base && noisy && again && other, "noise buffers");
    if (base && noisy && again && other) {
        for (size_t i = 0; i < n; i++) base[i] = (float)(i % 17) * 0.25f - 1.0f;

        memcpy(noisy, base, n * sizeof *base);
        fedkd_partition_apply_noise(p, 0, 123, noisy, samples, floats);
        CHECK(memcmp(noisy, base, n * sizeof *base) == 0, "client 0 must get no noise");

        for (int c = 3; c < 10; c += 6) {
            memcpy(noisy, base, n * sizeof *base);
            fedkd_partition_apply_noise(p, c, 123, noisy, samples, floats);
            double sum = 0.0, sum_squares = 0.0;
            for (size_t i = 0; i < n; i++) {
                double delta = (double)noisy[i] - (double)base[i];
                sum += delta;
                sum_squares += delta * delta;
            }
            double mean = sum / (double)n;
            double std = sqrt(sum_squares / (double)n - mean * mean);
            double expected = 2.0 * c / 10.0;
            CHECK(fabs(std - expected) <= 0.1 * expected, "client %d noise std %.4f, expected %.4f",
                  c, std, expected);
            CHECK(fabs(mean) <= 0.02 * expected, "client %d noise mean %.4f", c, mean);

            memcpy(again, base, n * sizeof *base);
            fedkd_partition_apply_noise(p, c, 123, again, samples, floats);
            CHECK(memcmp(noisy, again, n * sizeof *noisy) == 0, "client %d noise not deterministic",
                  c);
            memcpy(other, base, n * sizeof *base);
            fedkd_partition_apply_noise(p, c, 124, other, samples, floats);
            CHECK(memcmp(noisy, other, n * sizeof *noisy) != 0,
                  "client %d: seeds 123 and 124 give the same noise", c);
        }
        /* Two clients with the same sigma still get different noise. */
        fedkd_partition *same_sigma = NULL;
        fedkd_partition_settings flat = s;
        CHECK(fedkd_partition_create(&same_sigma, &flat, labels, COUNT, CLASSES) == FEDKD_OK,
              "feature-noise again: %s", fedkd_error_message());
        if (same_sigma) {
            same_sigma->noise_sigma[4] = same_sigma->noise_sigma[5];
            memcpy(noisy, base, n * sizeof *base);
            memcpy(other, base, n * sizeof *base);
            fedkd_partition_apply_noise(same_sigma, 4, 123, noisy, samples, floats);
            fedkd_partition_apply_noise(same_sigma, 5, 123, other, samples, floats);
            CHECK(memcmp(noisy, other, n * sizeof *noisy) != 0,
                  "clients 4 and 5 get the same noise stream");
        }
        fedkd_partition_destroy(&same_sigma);
    }
    free(base);
    free(noisy);
    free(again);
    free(other);
    fedkd_partition_destroy(&p);
}

int main(void)
{
    int32_t *balanced = make_labels(COUNT, CLASSES, 0, 11);
    int32_t *unbalanced = make_labels(COUNT, CLASSES, 1, 12);
    const size_t big_count = 20000;
    int32_t *big = make_labels(big_count, CLASSES, 1, 13);
    CHECK(balanced && unbalanced && big, "label allocation");
    if (!balanced || !unbalanced || !big) return test_finish("test_partition_schemes");

    test_shards(balanced, "balanced");
    test_shards(unbalanced, "unbalanced");
    test_dirichlet(balanced, "balanced");
    test_dirichlet(unbalanced, "unbalanced");
    test_quantity(big, big_count, "unbalanced 20000");
    test_feature_noise(unbalanced);

    free(balanced);
    free(unbalanced);
    free(big);
    return test_finish("test_partition_schemes");
}
