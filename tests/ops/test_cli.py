"""The ops CLI against moto's server: pipeline runs, model versions, approval, invocation and clear errors.

moto emulates CloudFormation and most of SageMaker over real HTTP. (Its UpdateModelPackage drops a
package's CustomerMetadataProperties, which SageMaker keeps; no test reads metrics after approving.)
It does not implement
InvokeEndpointWithResponseStream (it answers 404), so the streaming path is tested on the decoding of
real server-sent events from the serving container's own encoder (test_stream_* below), not via moto.
"""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest

from jax_llm.serving.api.openai_schema import ChunkWriter, parse_chat, parse_completion
from jax_llm.serving.api.tgi_schema import error_event, stream_event
from jax_llm.serving.engine.types import Generation, RequestError, Token
from ops.aws import Aws
from ops.endpoint_invocation import (
    ServerSentEvents,
    decode_event_stream,
    event_text,
    request_body,
    stream_tokens,
)
from ops.errors import OpsError
from stacks.names import COMPONENT_OUTPUT
from stacks.pipeline.definition import training_definition, tuning_definition
from stacks.pipeline.resources import PipelineResources
from stacks.settings import Settings
from tests.support import REPO

GROUP = "jax-llm-gpt"
TRAINING_PIPELINE = "jax-llm-training"
TUNING_PIPELINE = "jax-llm-tuning"
ENDPOINT = "jax-llm"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jax-llm:abc"


def _client(moto: str, service: str):
    return boto3.client(service, endpoint_url=moto)


def _deploy_stack(moto: str, name: str, outputs: dict[str, str]) -> None:
    """A CloudFormation stack with the given outputs, as `cdk deploy` would leave it."""
    template = {
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": f"/{name}/deployed", "Type": "String", "Value": "yes"},
            }
        },
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    _client(moto, "cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def _definitions() -> tuple[str, str]:
    """The training and tuning pipeline definitions TrainingStack deploys, from cdk.json's settings."""
    settings = Settings.from_context(json.loads((REPO / "cdk.json").read_text())["context"])
    resources = PipelineResources(
        image_uri=IMAGE,
        execution_role_arn=ROLE,
        artifacts_bucket_name="artifacts",
        data_bucket_name="data",
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
        model_package_group_name=GROUP,
    )
    return (
        json.dumps(training_definition(resources, settings.pipeline)),
        json.dumps(tuning_definition(resources, settings.pipeline, settings.tuning)),
    )


@pytest.fixture
def training_stack(moto: str) -> None:
    """TrainingStack's outputs, its pipelines and its (empty) model package group in moto."""
    _deploy_stack(
        moto,
        "TrainingStack",
        {
            "TrainingPipelineName": TRAINING_PIPELINE,
            "TuningPipelineName": TUNING_PIPELINE,
            "ModelPackageGroupName": GROUP,
        },
    )
    sagemaker = _client(moto, "sagemaker")
    training, tuning = _definitions()
    sagemaker.create_pipeline(PipelineName=TRAINING_PIPELINE, RoleArn=ROLE, PipelineDefinition=training)
    sagemaker.create_pipeline(PipelineName=TUNING_PIPELINE, RoleArn=ROLE, PipelineDefinition=tuning)
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)


def _register(moto: str, val_loss: float, execution: str) -> str:
    """Registers a version the way the pipeline's RegisterModel step does (val_loss as customer metadata)."""
    return _client(moto, "sagemaker").create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://artifacts/model.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json", "text/event-stream"],
        },
        CustomerMetadataProperties={"val_loss": str(val_loss), "PipelineExecutionId": execution},
    )["ModelPackageArn"]


@pytest.fixture
def registered(moto: str, training_stack: None) -> list[str]:
    """Three versions, oldest first, with validation losses 3.0, 2.5 and 2.8."""
    return [_register(moto, loss, f"exec{i}") for i, loss in enumerate((3.0, 2.5, 2.8))]


def _executions(moto: str, pipeline: str) -> list[dict]:
    sagemaker = _client(moto, "sagemaker")
    summaries = sagemaker.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]
    return [
        sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=s["PipelineExecutionArn"])[
            "PipelineParameters"
        ]
        for s in summaries
    ]


def test_train_starts_the_stack_pipeline_with_the_given_parameters(cli, moto, training_stack):
    result = cli("train", "-p", "learning_rate=3e-4", "-p", "max_steps=2000", "-p", "TrainingInstanceCount=2")
    assert result.code == 0, result.err
    assert TRAINING_PIPELINE in result.out
    assert _executions(moto, TRAINING_PIPELINE) == [
        [
            {"Name": "learning_rate", "Value": "3e-4"},
            {"Name": "max_steps", "Value": "2000"},
            {"Name": "TrainingInstanceCount", "Value": "2"},
        ]
    ]


def test_tune_starts_the_tuning_pipeline(cli, moto, training_stack):
    result = cli("tune", "-p", "TuningMaxJobs=4", "-p", "max_steps=3000")
    assert result.code == 0, result.err
    assert _executions(moto, TUNING_PIPELINE) == [
        [{"Name": "TuningMaxJobs", "Value": "4"}, {"Name": "max_steps", "Value": "3000"}]
    ]
    assert _executions(moto, TRAINING_PIPELINE) == []


def test_tune_refuses_a_hyperparameter_the_tuner_searches(cli, moto, training_stack):
    result = cli("tune", "-p", "learning_rate=3e-4")
    assert result.code == 1
    assert "no parameter 'learning_rate'" in result.err


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("learnng_rate=3e-4", "no parameter 'learnng_rate'. Did you mean 'learning_rate'?"),
        ("max_steps=-5", "max_steps"),
        ("TrainingInstanceCount=two", "TrainingInstanceCount is Integer"),
        ("UseSpotInstances=maybe", "UseSpotInstances is Boolean"),
        ("learning_rate", "-p expects NAME=VALUE"),
    ],
)
def test_a_bad_parameter_is_refused_before_any_run_starts(cli, moto, training_stack, assignment, message):
    result = cli("train", "-p", assignment)
    assert result.code == 1
    assert message in result.err
    assert _executions(moto, TRAINING_PIPELINE) == []


def test_train_without_training_stack_says_to_deploy_it(cli):
    result = cli("train", "-p", "max_steps=10")
    assert result.code == 1
    assert "Stack 'TrainingStack' is not deployed" in result.err and "cdk deploy TrainingStack" in result.err


def test_train_against_a_missing_pipeline_is_a_clear_error(cli, training_stack):
    result = cli("train", "--pipeline-name", "nope")
    assert result.code == 1
    assert "Pipeline 'nope' does not exist" in result.err


def test_versions_lists_newest_first_with_metrics_from_the_registered_report(cli, registered):
    result = cli("versions")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["3", "2", "1"]
    assert "PendingManualApproval" in lines[0]
    assert "val_loss=2.8" in lines[0] and "PipelineExecutionId=exec2" in lines[0]
    assert "val_loss=2.5" in lines[1]


def test_versions_json(cli, registered):
    result = cli("versions", "--json")
    rows = json.loads(result.out)
    assert [(r["version"], r["arn"], r["metrics"]["val_loss"]) for r in rows] == [
        (3, registered[2], "2.8"),
        (2, registered[1], "2.5"),
        (1, registered[0], "3.0"),
    ]


def test_versions_of_a_missing_group_is_a_clear_error(cli, training_stack):
    result = cli("versions", "--group", "no-such-group")
    assert result.code == 1
    assert "Model package group 'no-such-group' does not exist" in result.err


def test_approve_makes_the_version_the_newest_approved_one(cli, moto, registered):
    result = cli("approve", "2", "--description", "lowest val_loss")
    assert result.code == 0, result.err
    assert "python -m ops release status" in result.out
    assert f"cdk deploy EndpointStack -c modelPackageArn={registered[1]}" in result.out
    sagemaker = _client(moto, "sagemaker")
    # The query EndpointStack's deploy-time lookup makes.
    approved = sagemaker.list_model_packages(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
    )
    assert [p["ModelPackageArn"] for p in approved["ModelPackageSummaryList"]] == [registered[1]]
    package = sagemaker.describe_model_package(ModelPackageName=registered[1])
    assert package["ApprovalDescription"] == "lowest val_loss"


def test_reject_by_arn(cli, moto, registered):
    result = cli("reject", registered[2])
    assert result.code == 0, result.err
    status = _client(moto, "sagemaker").describe_model_package(ModelPackageName=registered[2])
    assert status["ModelApprovalStatus"] == "Rejected"


@pytest.mark.parametrize(
    "version, message",
    [
        ("7", "has no version 7"),
        ("latest", "--version must be a version number or a model package ARN"),
        ("arn:aws:sagemaker:us-east-1:123456789012:model-package/jax-llm-gpt/9", "not found"),
    ],
)
def test_approve_a_missing_version_is_a_clear_error(cli, registered, version, message):
    result = cli("approve", version)
    assert result.code == 1
    assert message in result.err


@pytest.fixture
def endpoint(moto: str, registered: list[str]) -> None:
    """An InService endpoint serving version 2, and EndpointStack's outputs."""
    sagemaker = _client(moto, "sagemaker")
    sagemaker.create_model(
        ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": registered[1]}
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": "m",
                "InstanceType": "ml.g4dn.xlarge",
                "InitialInstanceCount": 1,
            }
        ],
    )  # moto knows no g5
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="c")
    _deploy_stack(moto, "EndpointStack", {"EndpointName": ENDPOINT})


def _queue_endpoint_result(moto: str, body: str, content_type: str = "application/json") -> None:
    """moto's documented way to choose what InvokeEndpoint answers next."""
    results = {
        "results": [{"Body": body, "ContentType": content_type, "InvokedProductionVariant": "primary"}]
    }
    request = urllib.request.Request(
        f"{moto}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps(results).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()


def test_invoke_prints_the_generated_text(cli, moto, endpoint):
    _queue_endpoint_result(moto, json.dumps([{"generated_text": " the model's answer"}]))
    result = cli("invoke", "Hello", "--max-new-tokens", "8", "--temperature", "0.7")
    assert result.code == 0, result.err
    assert result.out == " the model's answer\n"


def test_invoke_rejects_an_answer_outside_the_tgi_schema(cli, moto, endpoint):
    _queue_endpoint_result(moto, json.dumps({"unexpected": True}))
    result = cli("invoke", "Hello")
    assert result.code == 1
    assert "outside TGI's schema" in result.err


def test_invoke_a_missing_endpoint_says_to_deploy_it(cli, registered):
    result = cli("invoke", "Hello", "--endpoint-name", "gone")
    assert result.code == 1
    assert "Endpoint 'gone' does not exist" in result.err and "cdk deploy EndpointStack" in result.err


def test_invoke_without_endpoint_stack_says_to_deploy_it(cli):
    result = cli("invoke", "Hello")
    assert result.code == 1
    assert "Stack 'EndpointStack' is not deployed" in result.err


def test_missing_credentials_are_reported_with_how_to_fix(cli, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = cli("versions", "--group", GROUP)
    assert result.code == 2
    assert "No usable AWS credentials" in result.err and "aws configure" in result.err


def test_aws_region_alone_is_enough(cli, monkeypatch, registered):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = cli("versions")
    assert result.code == 0, result.err


def test_missing_region_is_reported(cli, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = cli("versions", "--group", GROUP)
    assert result.code == 2
    assert "No AWS region" in result.err


def _server_stream() -> bytes:
    """What the serving container writes for a three-token streamed generation (its own encoder)."""
    tokens = [
        Token(id=10, text="Hel", logprob=-0.1, special=False),
        Token(id=11, text="lo", logprob=-0.2, special=False),
        Token(id=0, text="<|endoftext|>", logprob=-0.3, special=True),
    ]
    final = Generation(text="Hello", tokens=tuple(tokens), finish_reason="eos_token", seed=None)
    return b"".join(
        [stream_event(tokens[0]), stream_event(tokens[1]), stream_event(tokens[2], final, "Hello")]
    )


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 64, 10_000])
def test_stream_events_survive_any_payload_part_boundaries(chunk_size):
    raw = _server_stream()
    parts = [{"PayloadPart": {"Bytes": raw[i : i + chunk_size]}} for i in range(0, len(raw), chunk_size)]
    events = list(stream_tokens(decode_event_stream(parts)))
    assert [e["token"]["text"] for e in events] == ["Hel", "lo", "<|endoftext|>"]
    assert events[-1]["generated_text"] == "Hello" and events[-1]["details"]["finish_reason"] == "eos_token"
    assert all(e["generated_text"] is None for e in events[:-1])


def test_stream_error_event_raises_with_the_servers_message():
    raw = stream_event(Token(id=10, text="Hel", logprob=-0.1, special=False)) + error_event(
        "engine stopped", "overloaded"
    )
    with pytest.raises(OpsError, match=r"failed mid-stream \(overloaded\): engine stopped"):
        list(stream_tokens(decode_event_stream([{"PayloadPart": {"Bytes": raw}}])))


def test_stream_model_error_and_truncation_are_reported():
    with pytest.raises(OpsError, match="ModelStreamError.*container crashed"):
        list(
            decode_event_stream([{"ModelStreamError": {"Message": "container crashed", "ErrorCode": "500"}}])
        )
    events = ServerSentEvents()
    assert list(events.feed(b'data:{"token": ')) == []
    with pytest.raises(OpsError, match="ended mid-event"):
        events.close()


def test_invoke_in_openai_s_chat_schema_prints_the_assistant_s_answer(cli, moto, endpoint):
    answer = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi there"}}
        ],
    }
    _queue_endpoint_result(moto, json.dumps(answer))
    result = cli("invoke", "Hello", "--schema", "chat", "--system", "Be brief.")
    assert result.code == 0, result.err
    assert result.out == "Hi there\n"


def test_invoke_names_the_schema_an_answer_is_outside_of(cli, moto, endpoint):
    _queue_endpoint_result(moto, json.dumps([{"generated_text": "tgi's"}]))
    result = cli("invoke", "Hello", "--schema", "completions")
    assert result.code == 1 and "outside OpenAI's completions schema" in result.err
    assert "--system needs --schema chat" in cli("invoke", "Hello", "--system", "x").err


def test_request_bodies_in_each_schema():
    parameters = {"max_new_tokens": 8, "temperature": 0.5, "stop": None}
    assert json.loads(request_body("chat", "Hi", parameters, True, system="Be brief.")) == {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 8,
        "temperature": 0.5,
        "stream": True,
    }
    assert json.loads(request_body("completions", "Hi", parameters, False)) == {
        "prompt": "Hi",
        "max_tokens": 8,
        "temperature": 0.5,
        "stream": False,
    }
    assert json.loads(request_body("tgi", "Hi", parameters, False))["parameters"] == {
        "max_new_tokens": 8,
        "temperature": 0.5,
    }


@pytest.mark.parametrize("chunk_size", [1, 5, 64, 10_000])
def test_openai_chat_chunks_from_the_server_s_own_writer_decode_to_the_text(chunk_size):
    parsed = parse_chat(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        lambda messages: "User: Hi\nAssistant:",
    )
    writer = ChunkWriter(parsed, "jax-llm")
    tokens = [
        Token(10, "Hel", -0.1, False),
        Token(11, "lo", -0.2, False),
        Token(0, "<|endoftext|>", -0.3, True),
    ]
    final = Generation("Hello", tuple(tokens), "eos_token", None)
    raw = writer.start() + writer.tokens(tokens[:1]) + writer.end(tokens[1:], final)
    parts = [{"PayloadPart": {"Bytes": raw[i : i + chunk_size]}} for i in range(0, len(raw), chunk_size)]
    events = list(stream_tokens(decode_event_stream(parts)))  # [DONE] ends the stream, it is no event
    assert "".join(event_text("chat", e) for e in events) == "Hello"
    assert events[-1]["choices"] == [] and "usage" in events[-1]


def test_an_openai_error_event_mid_stream_raises_with_its_message():
    raw = ChunkWriter(parse_completion({"prompt": "a", "stream": True}), "m").error(
        RequestError(500, "generation", "the engine failed")
    )
    with pytest.raises(OpsError, match=r"failed mid-stream \(generation\): the engine failed"):
        list(stream_tokens(decode_event_stream([{"PayloadPart": {"Bytes": raw}}])))


def test_invoke_on_an_endpoint_of_inference_components_names_the_stack_s_component(
    cli, moto, endpoint, monkeypatch
):
    """In inference-components mode EndpointStack names its component in an output; every request names it
    (InvokeEndpoint refuses a request without it on such an endpoint). moto ignores the parameter, so the
    request is read as botocore sends it, after botocore validated it against the API model."""
    component = "jax-llm-endpoint-model"
    _deploy_stack(moto, "ComponentStack", {"EndpointName": ENDPOINT, COMPONENT_OUTPUT: component})
    sent: list[dict] = []
    real = Aws.client

    def client(self, service):
        made = real(self, service)
        if service == "sagemaker-runtime" and not sent:
            made.meta.events.register(
                "before-call.sagemaker-runtime.InvokeEndpoint", lambda params, **_: sent.append(params)
            )
        return made

    monkeypatch.setattr(Aws, "client", client)
    _queue_endpoint_result(moto, json.dumps([{"generated_text": " copy's answer"}]))
    result = cli("--endpoint-stack", "ComponentStack", "invoke", "Hello")
    assert result.code == 0, result.err
    assert result.out == " copy's answer\n"
    # InvokeEndpoint carries the component in a header (the API model's InferenceComponentName location).
    assert [p["headers"].get("X-Amzn-SageMaker-Inference-Component") for p in sent] == [component]
