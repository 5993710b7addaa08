/* What local training takes from the config (include/fedkd/train/train.h). */
#include <stdio.h>

#include "fedkd/nn/model_json.h"
#include "fedkd/train/train.h"

fedkd_optimizer_settings fedkd_train_optimizer_settings(const fedkd_config *config)
{
    fedkd_optimizer_settings s = fedkd_optimizer_default_settings();
    snprintf(s.name, sizeof s.name, "%s", config->local.optimizer);
    s.lr = (float)config->local.lr;
    s.momentum = (float)config->local.momentum;
    s.nesterov = config->local.nesterov;
    s.weight_decay = (float)config->local.weight_decay;
    return s;
}

fedkd_status fedkd_train_model_spec(const fedkd_config *config, fedkd_shape shape,
                                    int num_classes, fedkd_model_spec *spec)
{
    return fedkd_model_spec_from_json(spec, config->model, shape, num_classes,
                                      "config key `model`");
}
