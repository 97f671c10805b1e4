"""SageMaker's hyperparameter tuner over the built-in trainer through SDK v2's `HyperparameterTuner`.

    .venv-sdk-v2/bin/python examples/sdk/v2_tuning.py ml.g5.2xlarge --image <ImageUri> --role <RoleArn> \
        --train s3://<bucket>/data/train --validation s3://<bucket>/data/validation \
        --output s3://<bucket>/tuning

The objective and the metric regexes are the image's own (jax_llm.contract.metrics, stdlib only). SDK v2's
local mode has no tuning jobs (its LocalSagemakerClient implements training, processing, transform,
models and endpoints, not CreateHyperParameterTuningJob): with `local` this script says so and exits 2.
The stacks' tuning pipeline (TrainingStack) runs the same tuner in the cloud.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "containers" / "jax-llm"))
from sagemaker.estimator import Estimator  # noqa: E402
from sagemaker.tuner import ContinuousParameter, HyperparameterTuner  # noqa: E402
from v2_session import session, uri  # noqa: E402

from jax_llm.contract.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("instance_type", help="a SageMaker instance type such as ml.g5.2xlarge (not `local`)")
parser.add_argument("--image", required=True, help="the jax-llm image (TrainingStack's ImageUri output)")
parser.add_argument("--train", required=True, help="the `train` channel: an s3:// prefix")
parser.add_argument("--validation", help="the `validation` channel (else held out of train)")
parser.add_argument("--output", required=True, help="s3:// prefix for each trial's model.tar.gz")
parser.add_argument("--role", default="arn:aws:iam::000000000000:role/local-mode-needs-none")
parser.add_argument("--max-jobs", type=int, default=4)
args = parser.parse_args()

estimator = Estimator(
    image_uri=args.image,
    role=args.role,
    instance_count=1,
    instance_type=args.instance_type,
    hyperparameters={"preset": "tiny", "max_steps": 200, "batch_size": 8, "seq_len": 64, "vocab_size": 512},
    output_path=uri(args.output),
    sagemaker_session=session(args.instance_type),
    base_job_name="jax-llm-v2-tuning",
)
tuner = HyperparameterTuner(
    estimator,
    objective_metric_name=OBJECTIVE_METRIC,
    objective_type="Minimize",
    metric_definitions=METRIC_DEFINITIONS,
    hyperparameter_ranges={"learning_rate": ContinuousParameter(1e-4, 3e-3, scaling_type="Logarithmic")},
    max_jobs=args.max_jobs,
    max_parallel_jobs=2,
)
if args.instance_type.startswith("local"):
    sys.exit(
        "SDK v2's local mode has no hyperparameter tuning jobs (LocalSagemakerClient has no "
        "create_hyper_parameter_tuning_job); run the trials with v2_builtin.py, or tune on SageMaker"
    )
channels = {"train": uri(args.train), **({"validation": uri(args.validation)} if args.validation else {})}
tuner.fit(channels)
print("best training job:", tuner.best_training_job())
