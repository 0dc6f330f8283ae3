/* renflow — normalizing flows for EEG and biomedical time series. Public API. */
#ifndef RENFLOW_H
#define RENFLOW_H

#include "renflow/core.h"
#include "renflow/nn.h"
#include "renflow/flow.h"
#include "renflow/model.h"
#include "renflow/data.h"
#include "renflow/train.h"
#include "renflow/ref.h"
#include "renflow/viz.h"
#include "renflow/jobs.h"
#include "renflow/metrics.h"
#include "renflow/dataset.h"
#include "renflow/crossval.h"
#include "renflow/dsp.h"
#include "renflow/edf.h"
#include "renflow/eegprep.h"
#include "renflow/tsflow.h"
#include "renflow/eegsim.h"
#include "renflow/explain.h"
#include "renflow/search.h"
#include "renflow/morph.h"
#include "renflow/importance.h"
#include "renflow/pareto.h"
#include "renflow/features.h"
#include "renflow/search_job.h"
#include "renflow/controller.h"
#include "renflow/supernet.h"

#endif
