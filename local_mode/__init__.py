"""Local mode: SageMaker's /opt/ml contract on one machine, with no AWS account.

The jobs run as host processes, or with --docker in the image on Docker or Podman (docs/local-mode.md).
"""
