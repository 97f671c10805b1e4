"""From a parsed request to prompts the engine runs: tokenized, checked against the context, budgets set.

Needs the tokenizer, but neither HTTP nor JAX: every schema (TGI, OpenAI completions and chat) parses into a
`GenerateRequest`, and this is where its prompts are measured. A prompt that cannot fit is a 422 naming the
field in the request's own schema.
"""

from __future__ import annotations

import dataclasses
import random

from tokenizers import Tokenizer

from jax_llm.serving.engine.types import GenerateRequest, validation_error


@dataclasses.dataclass
class Prompt:
    """A tokenized, validated prompt with its resolved generation settings."""

    ids: list[int]
    max_new_tokens: int
    stop: tuple[str, ...]
    greedy: bool
    temperature: float
    top_k: int  # 0 = off
    top_p: float  # 1.0 = off
    seed: int | None  # None for greedy decoding


class PromptBuilder:
    """Tokenizes the prompts of a request and resolves their token budgets against a context length."""

    def __init__(self, tokenizer: Tokenizer, context: int, default_max_new_tokens: int):
        self.tokenizer = tokenizer
        self.context = context
        self.default_max_new_tokens = default_max_new_tokens

    def prepare(self, request: GenerateRequest) -> list[Prompt]:
        """One Prompt per input; raises RequestError (422) naming the field."""
        params, names = request.params, request.names
        prompts = []
        for i, text in enumerate(request.inputs):
            where = f"{names.inputs}[{i}]" if request.batched else names.inputs
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            if params.truncate is not None:
                ids = ids[-params.truncate :]
            if len(ids) >= self.context:
                hint = f"; set {names.truncate} to keep only the last tokens" if names.truncate else ""
                raise validation_error(
                    f"{where} has {len(ids)} tokens but the model's context is {self.context} tokens "
                    f"(at most {self.context - 1} for the prompt){hint}",
                    names.inputs,
                )
            if params.max_new_tokens is None:
                max_new = min(self.default_max_new_tokens, self.context - len(ids))
            elif len(ids) + params.max_new_tokens > self.context:
                raise validation_error(
                    f"{where} has {len(ids)} tokens; with {names.max_new_tokens}={params.max_new_tokens} "
                    f"that exceeds the model's context of {self.context} tokens",
                    names.max_new_tokens,
                )
            else:
                max_new = params.max_new_tokens
            sampling = params.sampling
            seed = (params.seed if params.seed is not None else random.getrandbits(64)) if sampling else None
            prompts.append(
                Prompt(
                    ids=ids,
                    max_new_tokens=max_new,
                    stop=params.stop,
                    greedy=not sampling,
                    temperature=params.temperature or 1.0,
                    top_k=params.top_k or 0,
                    top_p=params.top_p or 1.0,
                    seed=seed,
                )
            )
        return prompts
