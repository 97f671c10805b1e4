"""A JAX/Flax GPT that trains, prepares data and serves on SageMaker's container contracts."""
