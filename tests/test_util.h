/* Minimal test helpers: every CHECK that fails prints where and why and
 * counts a failure; a test's main returns test_finish(), non-zero if any
 * check failed. */
#ifndef FEDKD_TEST_UTIL_H
#define FEDKD_TEST_UTIL_H

#include <math.h>
#include <stdio.h>

static int test_failures = 0;
static int test_checks = 0;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        test_checks++;                                                       \
        if (!(cond)) {                                                       \
            test_failures++;                                                 \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* |a - b| <= tol * max(1, |a|, |b|) */
#define CHECK_CLOSE(a, b, tol, what)                                           \
    do {                                                                       \
        double check_a_ = (double)(a), check_b_ = (double)(b);                 \
        double check_scale_ = fmax(1.0, fmax(fabs(check_a_), fabs(check_b_))); \
        CHECK(fabs(check_a_ - check_b_) <= (tol) * check_scale_,               \
              "%s: %.9g vs %.9g (tol %g)", (what), check_a_, check_b_,         \
              (double)(tol));                                                  \
    } while (0)

static inline int test_finish(const char *name)
{
    if (test_failures)
        fprintf(stderr, "%s: %d of %d checks failed\n", name, test_failures, test_checks);
    else
        printf("%s: all %d checks passed\n", name, test_checks);
    return test_failures ? 1 : 0;
}

#endif
