"""The deployed resources a pipeline definition names (CloudFormation tokens at synth, values at deploy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineResources:
    """ARNs, names and the image URI that the steps' arguments refer to."""

    image_uri: str  # our image at its content tag
    execution_role_arn: str  # the role the jobs run as (never the pipeline role)
    artifacts_bucket_name: str  # model outputs, checkpoints, prepared data
    data_bucket_name: str  # raw and tokenized training data
    kms_key_arn: str  # encrypts job volumes and outputs
    model_package_group_name: str  # the Model Registry group models are registered in
    training_code_uri: str | None = None  # script mode: the team's sourcedir.tar.gz (the `code` channel)
    training_code_file: str | None = None  # its file name in the channel's directory (the object's key)
    tracking_arn: str | None = None  # the MLflow tracking server the Track steps log to; None: no Track steps
    tracking_experiment: str | None = None  # the MLflow experiment of this pipeline's runs (its name)
    image_tag: str | None = None  # the image's content tag, a tag of every run
