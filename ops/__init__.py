"""Ops CLI for the deployed stacks: training runs, the model registry and endpoint invocation (`python -m ops`)."""
