/* Private to src/fl: what the federation's files share. */
#ifndef FEDKD_FL_PRIVATE_H
#define FEDKD_FL_PRIVATE_H

#include "fedkd/core/comm.h"
#include "fedkd/data/clientset.h"
#include "fedkd/data/partition.h"
#include "fedkd/data/source.h"
#include "fedkd/fl/fl.h"
#include "fedkd/io/runlog.h"
#include "fedkd/nn/model_json.h"
#include "fedkd/train/train.h"

#endif
