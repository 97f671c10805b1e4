"""The SageMaker Pipelines definitions that TrainingStack deploys, written as plain JSON-ready dicts."""
