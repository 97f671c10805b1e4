"""Local mode: SageMaker's /opt/ml contract on one machine, with no AWS account and no Docker engine."""
