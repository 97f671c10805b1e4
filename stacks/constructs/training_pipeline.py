"""The SageMaker Pipelines that train and tune the model, and the role they run as."""

from __future__ import annotations

from dataclasses import replace

from aws_cdk import Stack
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.constructs.pipeline_role import PipelineRole
from stacks.pipeline.definition import training_definition, tuning_definition
from stacks.pipeline.resources import PipelineResources
from stacks.settings import PipelineSettings, ScriptSettings, TuningSettings


class TrainingPipelines(Construct):
    """Two AWS::SageMaker::Pipeline resources, ``<project>-training`` and ``<project>-tuning``.

    The definitions are written by ``stacks.pipeline`` (not by the SageMaker SDK, which needs AWS
    credentials to build one) and embedded in the template, so a synth is the whole review.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project_name: str,
        resources: PipelineResources,
        pipeline: PipelineSettings,
        tuning: TuningSettings,
        script: ScriptSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.pipeline_role = PipelineRole(
            self,
            "Role",
            execution_role_arn=resources.execution_role_arn,
            model_package_group_name=resources.model_package_group_name,
        )
        stack = Stack.of(self)
        self.training_pipeline_name = f"{project_name}-training"
        self.tuning_pipeline_name = f"{project_name}-tuning"
        # One MLflow experiment per pipeline, named after it.
        self.training_definition = training_definition(
            replace(resources, tracking_experiment=self.training_pipeline_name), pipeline, script
        )
        # The tuner tunes the team's script only when it is told the script's names for what it searches.
        tuning_resources = replace(resources, tracking_experiment=self.tuning_pipeline_name)
        if not script.tuned:
            tuning_resources = replace(tuning_resources, training_code_uri=None)
        self.tuning_definition = tuning_definition(tuning_resources, pipeline, tuning, script)
        self.training = self._pipeline(
            "Training",
            self.training_pipeline_name,
            self.training_definition,
            "Prepare, train the JAX GPT, register it when val_loss clears the bar",
        )
        self.tuning = self._pipeline(
            "Tuning",
            self.tuning_pipeline_name,
            self.tuning_definition,
            "Tune learning rate, warmup and weight decay; register the best model",
        )
        # Pipeline ARNs carry the name in lower case.
        self.training_pipeline_arn = stack.format_arn(
            service="sagemaker", resource="pipeline", resource_name=self.training_pipeline_name.lower()
        )

    def _pipeline(
        self, construct_id: str, name: str, definition: dict, description: str
    ) -> sagemaker.CfnPipeline:
        """One pipeline, created only after its role may do what the steps need."""
        resource = sagemaker.CfnPipeline(
            self,
            construct_id,
            pipeline_name=name,
            pipeline_description=description,
            role_arn=self.pipeline_role.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": Stack.of(self).to_json_string(definition)},
        )
        resource.node.add_dependency(self.pipeline_role.policy)
        return resource
