"""The inference-toolkit server for a model directory with the team's own `code/inference.py`."""
