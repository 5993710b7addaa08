/* EXPECT_ERROR(what, status, "needle", ...): the status is a config error
 * and its message holds every needle (the nn tests' refusals). */
#ifndef FEDKD_TEST_EXPECT_CONFIG_ERROR_H
#define FEDKD_TEST_EXPECT_CONFIG_ERROR_H

#include <string.h>

#include "fedkd/core/status.h"
#include "test_util.h"

static void expect_error(const char *what, fedkd_status status, const char *const *needles,
                         size_t count)
{
    CHECK(status == FEDKD_ERR_CONFIG, "%s: status %s, expected a config error", what,
          fedkd_status_name(status));
    const char *message = fedkd_error_message();
    for (size_t i = 0; i < count; i++)
        CHECK(strstr(message, needles[i]) != NULL, "%s: message lacks \"%s\": %s", what,
              needles[i], message);
}

#define EXPECT_ERROR(what, status, ...)                                \
    expect_error((what), (status), (const char *const[]){__VA_ARGS__}, \
                 sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

#endif
