"""`python -m jax_llm serve`: SageMaker's inference contract in front of one continuous-batching engine.

Three rooms with one-way doors, as vLLM and TGI separate theirs:
- `engine/`: the engine (its own request and result types, prompt validation, the scheduler, the model
  runner on the device, sampling, detokenizing, loading a model directory). It imports nothing from `api/`.
- `api/`: HTTP (the Starlette app, body reading), TGI's and OpenAI's schemas and routes, chat templates,
  token metrics; it drives the engine through its types.
- `handler/`: the inference-toolkit server for the team's own `code/inference.py`.
`settings.py` (the environment, read once) and `server.py` (the entry point that picks and starts one of
the two servers) sit beside them.
"""
