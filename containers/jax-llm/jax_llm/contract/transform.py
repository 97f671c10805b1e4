"""Batch transform: what SageMaker tells a serving container in a transform job, and how it splits and joins.

A transform job starts the image with `serve` and these variables, asks `GET /execution-parameters` when
the job leaves MaxConcurrentTransforms, BatchStrategy or MaxPayloadInMB unset, then POSTs its records to
`/invocations`. With SplitType Line and BatchStrategy SingleRecord each line of an input object is one
request; with AssembleWith Line the answers are joined, one per line and in input order, into
`<output prefix>/<input object name>.out`. Stdlib only: local mode and the stacks import it.
"""

from __future__ import annotations

BATCH_VARIABLE = "SAGEMAKER_BATCH"  # "true" in a transform job
MAX_PAYLOAD_VARIABLE = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
BATCH_STRATEGY_VARIABLE = "SAGEMAKER_BATCH_STRATEGY"  # SINGLE_RECORD or MULTI_RECORD
MAX_CONCURRENT_VARIABLE = "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"
EXECUTION_PARAMETERS_PATH = "/execution-parameters"

OUTPUT_SUFFIX = ".out"  # each input object's answers land in <its name>.out
DEFAULT_MAX_PAYLOAD_MB = 6  # CreateTransformJob's default MaxPayloadInMB
DEFAULT_INVOCATION_TIMEOUT_S = 600  # ModelClientConfig.InvocationsTimeoutInSeconds' default
