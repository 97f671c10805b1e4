"""A trained model behind an endpoint through SDK v2's `Model(...).deploy()`, locally or on SageMaker.

    .venv-sdk-v2/bin/python examples/sdk/v2_deploy.py local \
        --image localhost/jax-llm:local --model-data gpt/model.tar.gz
    .venv-sdk-v2/bin/python examples/sdk/v2_deploy.py local --image ... --model-data bigram/model.tar.gz \
        --entry-point inference.py
    .venv-sdk-v2/bin/python examples/sdk/v2_deploy.py ml.g5.2xlarge --image <ImageUri> --role <RoleArn> \
        --model-data s3://<bucket>/jobs/<job>/output/model.tar.gz --code-location s3://<bucket>/code

A local model.tar.gz must sit in a folder of its own: v2's local mode unpacks it beside itself and mounts that
whole folder as /opt/ml/model; with an entry point it also repacks the archive in place (pass a copy).

Without an entry point the image serves its built-in GPT (TGI's and OpenAI's bodies on /invocations);
with `--entry-point inference.py` the SDK repacks the model with examples/script_mode/src/inference.py
and the image runs the team's handler. Prints each answer as a JSON line, then deletes the endpoint.
"""

import argparse
import json
import sys
from pathlib import Path

from sagemaker.deserializers import JSONDeserializer
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import JSONSerializer
from v2_session import session, uri

SOURCE = Path(__file__).resolve().parent.parent / "script_mode" / "src"
TGI = {"inputs": "def ", "parameters": {"max_new_tokens": 6, "do_sample": False}}
OPENAI_CHAT = {"model": "jax-llm", "messages": [{"role": "user", "content": "def "}], "max_tokens": 6}
OPENAI_COMPLETION = {"model": "jax-llm", "prompt": "class ", "max_tokens": 6, "temperature": 0}
HANDLER = {"inputs": "def ", "max_new_bytes": 8}  # what examples/script_mode/src/inference.py reads

parser = argparse.ArgumentParser()
parser.add_argument("instance_type", help="`local`, or a SageMaker instance type such as ml.g5.2xlarge")
parser.add_argument("--image", required=True, help="the jax-llm image (TrainingStack's ImageUri output)")
parser.add_argument("--model-data", required=True, help="model.tar.gz: a local file, or an s3:// URI")
parser.add_argument("--entry-point", help="the team's handler in examples/script_mode/src (inference.py)")
parser.add_argument(
    "--code-location",
    help="s3:// prefix for the repacked model (cloud). Locally the SDK "
    "repacks --model-data in place and only parses this; left out, it asks STS for a bucket",
)
parser.add_argument("--role", default="arn:aws:iam::000000000000:role/local-mode-needs-none")
parser.add_argument("--local-port", type=int, default=8080, help="local mode: the endpoint's port here")
parser.add_argument(
    "--env",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="the container's environment, e.g. JAX_LLM_MAX_BATCH=1 (fewer programs to compile: "
    "v2's local mode gives an endpoint 2 minutes to answer /ping)",
)
args = parser.parse_args()
local = args.instance_type.startswith("local")

model = Model(
    image_uri=args.image,
    model_data=uri(args.model_data),
    role=args.role,
    entry_point=args.entry_point,
    source_dir=str(SOURCE) if args.entry_point else None,
    code_location=args.code_location or ("s3://local-mode-never-uploads/code" if local else None),
    sagemaker_session=session(args.instance_type, serving_port=args.local_port),
    predictor_cls=Predictor,  # without it deploy() returns None
    env=dict(pair.split("=", 1) for pair in args.env),
)
predictor = model.deploy(
    initial_instance_count=1,
    instance_type=args.instance_type,
    serializer=JSONSerializer(),
    deserializer=JSONDeserializer(),
)
try:
    for body in [HANDLER] if args.entry_point else [TGI, OPENAI_CHAT, OPENAI_COMPLETION]:
        answer = json.dumps({"request": body, "response": predictor.predict(body)})
        sys.stdout.write(f"answer: {answer}\n")  # one write: the container's log lines print meanwhile
        sys.stdout.flush()
finally:
    predictor.delete_endpoint()
