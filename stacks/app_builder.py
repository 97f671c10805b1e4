"""Composes the CDK app from CDK context: settings, stacks and cdk-nag. app.py and the tests share it."""

from __future__ import annotations

from aws_cdk import App, Environment

from stacks import names
from stacks.endpoint_stack import EndpointStack
from stacks.nag import add_nag_checks
from stacks.settings import Settings
from stacks.training_stack import TrainingStack


def build_app(app: App) -> App:
    """Add the project's stacks and cdk-nag checks to ``app``, reading settings from its context."""
    settings = Settings.from_context(app)
    # Environment-agnostic stacks: account and region come from the deploying credentials, so synth
    # needs none and makes no AWS call.
    env = Environment()
    training = TrainingStack(
        app,
        names.TRAINING_STACK,
        settings=settings,
        env=env,
        description="JAX LLM on SageMaker: image, buckets, KMS key, execution role, Model Registry",
    )
    EndpointStack(
        app,
        names.ENDPOINT_STACK,
        settings=settings,
        env=env,
        key=training.key,
        artifacts_bucket=training.artifacts_bucket,
        execution_role=training.execution_role,
        execution_role_policy=training.execution_role_policy,
        model_package_group_name=training.model_package_group_name,
        description="JAX LLM on SageMaker: autoscaling endpoint for a registered model version",
    )
    add_nag_checks(app)
    return app
