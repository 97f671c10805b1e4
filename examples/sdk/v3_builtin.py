"""The built-in GPT trainer through SDK v3's `ModelTrainer`: on this machine (`local`) or on SageMaker.

    python examples/sdk/v3_builtin.py local --image localhost/jax-llm:local --train ./data
    python examples/sdk/v3_builtin.py ml.g5.2xlarge --image <ImageUri output> --role <RoleArn output> \
        --train s3://<bucket>/data/train --output s3://<bucket>/jobs

`local` runs the image under Docker or Podman through the SDK's own local mode (a compose tool and Docker's
API; see docs/own-code.md); any other value is a SageMaker instance type. No source code: the image
starts with its default command (`train`) and reads the hyperparameters, as a SageMaker training job does.
"""

import argparse
import json
from pathlib import Path

from sagemaker.core.training.configs import Compute, InputData, OutputDataConfig
from sagemaker.train.model_trainer import Mode, ModelTrainer

parser = argparse.ArgumentParser()
parser.add_argument("instance_type", help="`local`, or a SageMaker instance type such as ml.g5.2xlarge")
parser.add_argument("--image", required=True, help="the jax-llm image (TrainingStack's ImageUri output)")
parser.add_argument("--train", required=True, help="the `train` channel: a directory, or an s3:// prefix")
parser.add_argument("--instance-count", type=int, default=1)
parser.add_argument("--role", help="the execution role (TrainingStack's output); not needed locally")
parser.add_argument("--output", help="s3:// prefix for model.tar.gz; locally the job's own directory")
parser.add_argument("--local-root", default="./v3-builtin", help="local mode: where the job's tree goes")
parser.add_argument("--hyperparameters", default="{}", help="JSON object over the defaults below")
args = parser.parse_args()

local = args.instance_type == "local"
if local:
    Path(args.local_root).mkdir(parents=True, exist_ok=True)  # the SDK makes its temporary folders in it
hyperparameters = {"preset": "tiny", "max_steps": 200, "batch_size": 8, "seq_len": 64, "vocab_size": 512}
hyperparameters.update(json.loads(args.hyperparameters))

trainer = ModelTrainer(
    training_image=args.image,
    training_mode=Mode.LOCAL_CONTAINER if local else Mode.SAGEMAKER_TRAINING_JOB,
    # SDK v3 names local instance types local_cpu / local_gpu.
    compute=Compute(
        instance_type="local_cpu" if local else args.instance_type, instance_count=args.instance_count
    ),
    hyperparameters=hyperparameters,
    input_data_config=[InputData(channel_name="train", data_source=args.train)],
    output_data_config=None if local else OutputDataConfig(s3_output_path=args.output),
    local_container_root=args.local_root,
    role=args.role,
    base_job_name="jax-llm-v3-builtin",
)
trainer.train()
# Judge the job by its outputs, not by train() returning: compose tools can lose a container's exit code
# (see docs/own-code.md). Locally: <local-root>/compressed_artifacts/{model,output}.tar.gz.
print(
    "model:",
    f"{args.local_root}/compressed_artifacts/model.tar.gz"
    if local
    else f"{args.output}/<job name>/output/model.tar.gz",
)
