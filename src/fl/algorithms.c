#include <stdio.h>
#include <string.h>

#include "fedkd/fl.h"

/* FedAvg: plain local training from the global weights. */
static void fedavg_configure_local(const fedkd_config *config, const float *global_params,
                                   fedkd_train_settings *settings)
{
    (void)config;
    (void)global_params;
    settings->prox_center = NULL;
    settings->prox_mu = 0.0f;
}

/* FedProx: (mu / 2) ||w - w_global||^2 in the local loss. */
static void fedprox_configure_local(const fedkd_config *config, const float *global_params,
                                    fedkd_train_settings *settings)
{
    settings->prox_center = global_params;
    settings->prox_mu = (float)config->fedprox.mu;
}

static const fedkd_algorithm fedavg = {
    .name = "fedavg",
    .summary = "sample-weighted average of client weights",
    .configure_local = fedavg_configure_local,
};
static const fedkd_algorithm fedprox = {
    .name = "fedprox",
    .summary = "FedAvg with a proximal term mu/2 ||w - w_global||^2",
    .configure_local = fedprox_configure_local,
};

const fedkd_algorithm *const fedkd_algorithms[] = {&fedavg, &fedprox, NULL};

fedkd_status fedkd_algorithm_find(const char *name, const fedkd_algorithm **out)
{
    char known[256] = "";
    for (int i = 0; fedkd_algorithms[i]; i++) {
        if (strcmp(fedkd_algorithms[i]->name, name) == 0) {
            *out = fedkd_algorithms[i];
            return FEDKD_OK;
        }
        size_t used = strlen(known);
        snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                 fedkd_algorithms[i]->name);
    }
    return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `algorithm`: unknown algorithm `%s`; expected one of: %s",
                      name, known);
}
