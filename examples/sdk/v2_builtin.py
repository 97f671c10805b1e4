"""The built-in GPT trainer through SDK v2's `Estimator`, the seed's own call, locally or on SageMaker.

    .venv-sdk-v2/bin/python examples/sdk/v2_builtin.py local \
        --image localhost/jax-llm:local --train ./data --output ./out
    .venv-sdk-v2/bin/python examples/sdk/v2_builtin.py ml.g5.2xlarge --image <ImageUri> --role <RoleArn> \
        --train s3://<bucket>/data/train --output s3://<bucket>/jobs
"""

import argparse
import json

from sagemaker.estimator import Estimator
from v2_session import session, uri

parser = argparse.ArgumentParser()
parser.add_argument("instance_type", help="`local`, or a SageMaker instance type such as ml.g5.2xlarge")
parser.add_argument("--image", required=True, help="the jax-llm image (TrainingStack's ImageUri output)")
parser.add_argument("--train", required=True, help="the `train` channel: a directory, or an s3:// prefix")
parser.add_argument("--output", required=True, help="where model.tar.gz goes: a directory or an s3:// prefix")
parser.add_argument("--instance-count", type=int, default=1)
parser.add_argument("--role", default="arn:aws:iam::000000000000:role/local-mode-needs-none")
parser.add_argument("--hyperparameters", default="{}", help="JSON object over the defaults below")
args = parser.parse_args()

hyperparameters = {"preset": "tiny", "max_steps": 200, "batch_size": 8, "seq_len": 64, "vocab_size": 512}
hyperparameters.update(json.loads(args.hyperparameters))
estimator = Estimator(
    image_uri=args.image,
    role=args.role,
    instance_count=args.instance_count,
    instance_type=args.instance_type,
    hyperparameters=hyperparameters,
    output_path=uri(args.output),
    sagemaker_session=session(args.instance_type),
    base_job_name="jax-llm-v2-builtin",
)
estimator.fit({"train": uri(args.train)})
# Judge the job by its outputs (the model, output.tar.gz's `failure`), not by fit() returning: compose
# tools can lose a container's exit code (docs/own-code.md).
print("model:", estimator.model_data)
