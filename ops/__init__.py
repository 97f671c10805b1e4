"""`python -m ops`: training runs, the model registry and endpoint invocations for the deployed stacks ."""
