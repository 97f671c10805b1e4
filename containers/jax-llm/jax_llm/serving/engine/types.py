"""What the engine takes and gives: a validated request, its generated tokens and its outcome.

These types are the engine's own. The HTTP layer (`serving/api/`) parses TGI and OpenAI bodies into a
`GenerateRequest` and renders a `Generation` in either schema; the engine knows neither schema.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class RequestError(Exception):
    """A request the server refuses: HTTP status, `error_type` and a message naming the field."""

    def __init__(self, status: int, error_type: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.error_type, self.message, self.param = status, error_type, message, param

    def body(self) -> dict[str, str]:
        """The JSON error body: {"error", "error_type"}."""
        return {"error": self.message, "error_type": self.error_type}


# Below this, sampling is decided by logit differences under 1e-5 alone, and under ~1e-37 float32 cannot
# hold logits / temperature at all (1e-39 gave only end-of-text): such requests are answered greedily.
GREEDY_BELOW_TEMPERATURE = 1e-6


def validation_error(message: str, param: str | None = None) -> RequestError:
    """422: the JSON is well formed but a field (`param`, where one is to blame) is missing, empty or out of
    range."""
    return RequestError(422, "validation", message, param)


@dataclasses.dataclass(frozen=True)
class FieldNames:
    """What the request's own schema calls the fields that errors found after parsing name."""

    inputs: str = "inputs"
    max_new_tokens: str = "parameters.max_new_tokens"
    truncate: str | None = "parameters.truncate"  # None: the schema has no way to truncate


TGI_NAMES = FieldNames()


@dataclasses.dataclass(frozen=True)
class GenerationParams:
    """The `parameters` object, validated. `None` means "not given" (defaults are applied by the engine)."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    do_sample: bool = False
    stop: tuple[str, ...] = ()
    seed: int | None = None
    return_full_text: bool = False
    details: bool = False
    truncate: int | None = None

    @property
    def sampling(self) -> bool:
        """TGI's rule: any sampling warper (temperature != 1, top_k, top_p) turns sampling on.

        A temperature below GREEDY_BELOW_TEMPERATURE is greedy: the limit of sampling as the temperature
        goes to 0 is the most likely token, and float32 logits divided by such a temperature overflow.
        """
        if self.temperature is not None and self.temperature < GREEDY_BELOW_TEMPERATURE:
            return False
        # top_p 1.0 keeps every token: it is the "off" value, as top_k None is.
        warped = (
            self.temperature not in (None, 1.0) or self.top_k is not None or self.top_p not in (None, 1.0)
        )
        return self.do_sample or warped


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    """One /invocations body: one or more prompts sharing the same parameters."""

    inputs: tuple[str, ...]
    batched: bool  # `inputs` was a list: the response has one entry per prompt either way
    params: GenerationParams
    stream: bool
    names: FieldNames = TGI_NAMES
    # TGI's text includes a stop sequence that ended it (with the rest of its last token); OpenAI's ends
    # just before it.
    keep_stop: bool = True


@dataclasses.dataclass(frozen=True)
class Token:
    """One generated token as TGI reports it."""

    id: int
    text: str
    logprob: float
    special: bool

    def as_json(self) -> dict[str, Any]:
        """{"id", "text", "logprob", "special"}."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RequestStats:
    """How one prompt went through the engine: its token counts and timings, in seconds."""

    prompt_tokens: int
    generated_tokens: int
    queue_s: float  # arrival to the start of its prefill (or to its end, had it none)
    ttft_s: float | None  # arrival to its first token; None without one
    tpot_s: float | None  # mean time per output token after the first; None with fewer than 2
    total_s: float  # arrival to the end


@dataclasses.dataclass(frozen=True)
class Generation:
    """A finished generation for one prompt. finish_reason: length, eos_token, stop_sequence, time_limit,
    cancelled (its client left) or error (the engine failed)."""

    text: str  # the generated text, special tokens left out
    tokens: tuple[Token, ...]
    finish_reason: str
    seed: int | None
    stats: RequestStats | None = None
