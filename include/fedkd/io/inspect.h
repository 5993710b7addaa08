/* Tools on checkpoint and model files, for `fedkd-sim inspect` and
 * `fedkd-sim export`. Both validate the file fully first (the same checks as
 * a resume) and name what is wrong. */
#ifndef FEDKD_INSPECT_H
#define FEDKD_INSPECT_H

#include <stdio.h>

#include "fedkd/core/status.h"

/* Prints what a checkpoint or model file holds: format and version, round,
 * config summary, model spec and parameter count, clients, partition and the
 * last rounds' metrics (checkpoints); datasets and metadata (model files). */
fedkd_status fedkd_inspect_file(const char *path, FILE *out);

/* Writes the global model of a checkpoint to a model file (model_file.h),
 * with metadata naming the checkpoint, its round, the last test accuracy
 * and the config. */
fedkd_status fedkd_checkpoint_export(const char *checkpoint_path, const char *model_path);

#endif
