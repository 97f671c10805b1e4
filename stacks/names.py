"""The names a deployed app is known by outside CDK: its stacks and the outputs `ops` reads.

Stdlib only: `ops/` imports it to find what `cdk deploy` made, and importing it must not load the CDK.
"""

TRAINING_STACK = "TrainingStack"
ENDPOINT_STACK = "EndpointStack"

# TrainingStack's outputs.
IMAGE_OUTPUT = "ImageUri"
EXECUTION_ROLE_OUTPUT = "ExecutionRoleArn"
ARTIFACTS_BUCKET_OUTPUT = "ArtifactsBucketName"
DATA_BUCKET_OUTPUT = "DataBucketName"
KMS_KEY_OUTPUT = "KmsKeyArn"
GROUP_OUTPUT = "ModelPackageGroupName"
TRAINING_PIPELINE_OUTPUT = "TrainingPipelineName"
TUNING_PIPELINE_OUTPUT = "TuningPipelineName"
PIPELINE_ROLE_OUTPUT = "PipelineRoleArn"
TRAINING_EXECUTION_OUTPUT = "TrainingExecutionArn"
TRACKING_OUTPUT = "MlflowTrackingServerArn"
TRACKING_UI_OUTPUT = "MlflowUi"

# EndpointStack's outputs.
ENDPOINT_OUTPUT = "EndpointName"
EXAMPLE_INVOCATION_OUTPUT = "ExampleInvocation"
DASHBOARD_OUTPUT = "DashboardName"
COMPONENT_OUTPUT = "InferenceComponentName"  # inference-components mode: the component serving the model
