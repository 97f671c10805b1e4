"""From a parsed request to prompts the engine runs: tokenized, checked against the context, budgets set.

Needs the tokenizer, but neither HTTP nor JAX: every schema (TGI, OpenAI completions and chat) parses into a
`GenerateRequest`, and this is where its prompts are measured. A prompt that cannot fit is a 422 naming the
field in the request's own schema.
"""

from __future__ import annotations

import dataclasses
import random

from tokenizers import Tokenizer

from jax_llm.serving.engine.limits import TRUNCATE_MARGIN_BYTES
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
    keep_stop: bool = True  # the text keeps a stop sequence that ended it (TGI), or ends before it (OpenAI)


def longest_token_bytes(tokenizer: Tokenizer) -> int | None:
    """The most UTF-8 bytes of input text one token can stand for; None when the tokenizer normalizes its
    input (a normalizer may drop characters, so no such bound holds). A token that decodes to part of a
    character counts as U+FFFD's 3 bytes: an overestimate, which keeps the bound safe."""
    if tokenizer.normalizer is not None:
        return None
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    return max(len(tokenizer.decode([i], skip_special_tokens=False).encode("utf-8")) for i in range(vocab))


class PromptBuilder:
    """Tokenizes the prompts of a request and resolves their token budgets against a context length."""

    def __init__(self, tokenizer: Tokenizer, context: int, default_max_new_tokens: int):
        self.tokenizer = tokenizer
        self.context = context
        self.default_max_new_tokens = default_max_new_tokens
        self.token_bytes = longest_token_bytes(tokenizer)
        # A prompt of more bytes than this holds more tokens than the context: refused (or cut, when it asks
        # to be truncated) before tokenizing, which is what holds the interpreter for a long prompt.
        self.max_prompt_bytes = None if self.token_bytes is None else context * self.token_bytes

    def _bounded(self, text: str, truncate: int | None, where: str, names) -> str:
        """`text`, or its tail when only the tail can count; 422 when it cannot fit whatever it holds."""
        if self.max_prompt_bytes is None or len(text) * 4 <= self.max_prompt_bytes:  # 4: UTF-8's widest
            return text
        raw = text.encode("utf-8")
        if len(raw) <= self.max_prompt_bytes:
            return text
        if truncate is None:
            hint = f"; set {names.truncate} to keep only the last tokens" if names.truncate else ""
            raise validation_error(
                f"{where} is {len(raw)} bytes: more than the model's context of {self.context} tokens can "
                f"hold (at most {self.max_prompt_bytes} bytes, {self.token_bytes} per token at most){hint}",
                names.inputs,
            )
        # The last `truncate` tokens lie within the last truncate * token_bytes bytes; the margin before
        # them keeps the tokenizer's split at the cut from reaching them.
        keep = min(truncate, self.context) * self.token_bytes + TRUNCATE_MARGIN_BYTES
        return raw[-keep:].decode("utf-8", errors="ignore") if keep < len(raw) else text

    def prepare(self, request: GenerateRequest) -> list[Prompt]:
        """One Prompt per input; raises RequestError (422) naming the field."""
        params, names = request.params, request.names
        prompts = []
        for i, text in enumerate(request.inputs):
            where = f"{names.inputs}[{i}]" if request.batched else names.inputs
            text = self._bounded(text, params.truncate, where, names)
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
                    keep_stop=request.keep_stop,
                )
            )
        return prompts
