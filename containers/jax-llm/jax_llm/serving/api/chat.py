"""Chat messages to a prompt: the model's chat template, rendered in jinja2's sandbox.

Which template: the tokenizer's own (`chat_template` in the model directory's `tokenizer_config.json`) when it
has one, else the exported `chat_template.jinja`, else the project's default (models exported before the
template was part of the export). See `jax_llm.model.chat_template`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from jax_llm.model.chat_template import CHAT_TEMPLATE_FILE, DEFAULT_CHAT_TEMPLATE, TOKENIZER_CONFIG_FILE
from jax_llm.serving.engine.types import validation_error

# What a template raises when the client's messages make it fail (not the template's own refusal).
_REFUSALS = (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError, RecursionError)


class TemplateError(Exception):
    """The template itself refused the messages (its `raise_exception`)."""


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


class ChatTemplate:
    """A compiled chat template with the tokenizer's special tokens."""

    def __init__(self, source: str, eos_token: str, bos_token: str = "", origin: str = "default"):
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_exception
        self.template = environment.from_string(source)
        self.eos_token, self.bos_token, self.origin = eos_token, bos_token, origin

    @classmethod
    def from_model_dir(cls, model_dir: Path, eos_token: str) -> ChatTemplate:
        """The tokenizer's template, else the exported one, else the default."""
        model_dir = Path(model_dir)
        config_file = model_dir / TOKENIZER_CONFIG_FILE
        if config_file.is_file():
            config = json.loads(config_file.read_text())
            if isinstance(config.get("chat_template"), str):
                bos = config.get("bos_token") if isinstance(config.get("bos_token"), str) else ""
                eos = config.get("eos_token") if isinstance(config.get("eos_token"), str) else eos_token
                return cls(config["chat_template"], eos, bos, origin=str(config_file))
        exported = model_dir / CHAT_TEMPLATE_FILE
        if exported.is_file():
            return cls(exported.read_text(), eos_token, origin=str(exported))
        return cls(DEFAULT_CHAT_TEMPLATE, eos_token)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt for `messages`; a template that refuses them is a 422 with its message."""
        try:
            return self.template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                eos_token=self.eos_token,
                bos_token=self.bos_token,
            )
        except TemplateError as error:
            raise validation_error(str(error), "messages") from None
        except _REFUSALS as error:
            # The template ran on the client's messages and refused them: a client mistake, never a 500.
            raise validation_error(
                f"the model's chat template failed on these messages: {type(error).__name__}: {error}"[:300],
                "messages",
            ) from None
