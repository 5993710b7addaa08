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
    fedkd_status status = fedkd_model_spec_from_json(spec, config->model, shape, num_classes,
                                                     "config key `model`");
    if (!status && config->local.batch_size < fedkd_model_spec_min_train_batch(spec))
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `local.batch_size`: the model of config key `model` has "
                            "a batchnorm layer, whose batch statistics need training batches of "
                            "at least %d samples, got %d",
                            fedkd_model_spec_min_train_batch(spec), config->local.batch_size);
    return status;
}
