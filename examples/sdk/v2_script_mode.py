"""The team's own script (examples/script_mode/src/train.py) through SDK v2's `Estimator(entry_point=...)`.

    .venv-sdk-v2/bin/python examples/sdk/v2_script_mode.py local \
        --image localhost/jax-llm:local --train ./data --output ./out
    .venv-sdk-v2/bin/python examples/sdk/v2_script_mode.py ml.g5.2xlarge --image <ImageUri> --role <RoleArn> \
        --train s3://<bucket>/data/train --output s3://<bucket>/jobs

The image's own script mode runs it (sagemaker_program / sagemaker_submit_directory); on several hosts it
sets JAX_* for the script's `join_cluster()`.
"""

import argparse
import json
from pathlib import Path

from sagemaker.estimator import Estimator
from v2_session import session, uri

SOURCE = Path(__file__).resolve().parent.parent / "script_mode" / "src"

parser = argparse.ArgumentParser()
parser.add_argument("instance_type", help="`local`, or a SageMaker instance type such as ml.g5.2xlarge")
parser.add_argument("--image", required=True, help="the jax-llm image (TrainingStack's ImageUri output)")
parser.add_argument("--train", required=True, help="the `train` channel: a directory, or an s3:// prefix")
parser.add_argument("--output", required=True, help="where model.tar.gz goes: a directory or an s3:// prefix")
parser.add_argument("--instance-count", type=int, default=1)
parser.add_argument("--role", default="arn:aws:iam::000000000000:role/local-mode-needs-none")
parser.add_argument("--hyperparameters", default='{"epochs": 1, "batch-size": 512}', help="JSON object")
args = parser.parse_args()

estimator = Estimator(
    image_uri=args.image,
    role=args.role,
    entry_point="train.py",
    source_dir=str(SOURCE),
    instance_count=args.instance_count,
    instance_type=args.instance_type,
    hyperparameters=json.loads(args.hyperparameters),
    output_path=uri(args.output),
    sagemaker_session=session(args.instance_type),
    base_job_name="jax-llm-v2-script",
)
estimator.fit({"train": uri(args.train)})
print("model:", estimator.model_data)
