"""`python -m jax_llm serve`: SageMaker's inference contract in front of one continuous-batching engine."""
