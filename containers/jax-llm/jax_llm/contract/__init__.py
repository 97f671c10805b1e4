"""SageMaker's side of the container: /opt/ml paths, hyperparameters, metric lines, the failure file, hosts,
script mode. Nothing here imports JAX: the stacks, ops and local mode import it."""
