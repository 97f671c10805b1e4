"""The team's own training script (examples/script_mode/src/train.py) through SDK v3's `ModelTrainer`.

    python examples/sdk/v3_script_mode.py local --image localhost/jax-llm:local --train ./data \
        --instance-count 2
    python examples/sdk/v3_script_mode.py ml.g5.2xlarge --image <ImageUri> --role <RoleArn> \
        --train s3://<bucket>/data/train --output s3://<bucket>/jobs

SDK v3 runs the script through its own driver (`sm_drivers`, with bash as the container's entry point), not
through the image's script mode: on several hosts the script joins them with the image's
`join_cluster()`, which reads the driver's SM_HOST_COUNT / SM_CURRENT_HOST_RANK / SM_MASTER_ADDR.
"""

import argparse
import json
from pathlib import Path

from sagemaker.core.training.configs import Compute, InputData, OutputDataConfig, SourceCode
from sagemaker.train.model_trainer import Mode, ModelTrainer

SOURCE = Path(__file__).resolve().parent.parent / "script_mode" / "src"

parser = argparse.ArgumentParser()
parser.add_argument("instance_type", help="`local`, or a SageMaker instance type such as ml.g5.2xlarge")
parser.add_argument("--image", required=True, help="the jax-llm image (TrainingStack's ImageUri output)")
parser.add_argument("--train", required=True, help="the `train` channel: a directory, or an s3:// prefix")
parser.add_argument("--instance-count", type=int, default=1)
parser.add_argument("--role", help="the execution role (TrainingStack's output); not needed locally")
parser.add_argument("--output", help="s3:// prefix for model.tar.gz; locally the job's own directory")
parser.add_argument("--local-root", default="./v3-script-mode", help="local mode: where the job's tree goes")
parser.add_argument("--hyperparameters", default='{"epochs": 1, "batch-size": 512}', help="JSON object")
args = parser.parse_args()

local = args.instance_type == "local"
if local:
    Path(args.local_root).mkdir(parents=True, exist_ok=True)  # the SDK makes its temporary folders in it
trainer = ModelTrainer(
    training_image=args.image,
    training_mode=Mode.LOCAL_CONTAINER if local else Mode.SAGEMAKER_TRAINING_JOB,
    source_code=SourceCode(source_dir=str(SOURCE), entry_script="train.py"),
    compute=Compute(
        instance_type="local_cpu" if local else args.instance_type, instance_count=args.instance_count
    ),
    hyperparameters=json.loads(args.hyperparameters),
    input_data_config=[InputData(channel_name="train", data_source=args.train)],
    output_data_config=None if local else OutputDataConfig(s3_output_path=args.output),
    local_container_root=args.local_root,
    role=args.role,
    base_job_name="jax-llm-v3-script",
)
trainer.train()
# Judge the job by its outputs (model.tar.gz, output.tar.gz's `failure`), not by train() returning.
print(
    "model:",
    f"{args.local_root}/compressed_artifacts/model.tar.gz"
    if local
    else f"{args.output}/<job name>/output/model.tar.gz",
)
