"""The chat template an exported model carries: how a list of chat messages becomes one prompt.

The exported directory holds it as `chat_template.jinja` (Hugging Face's file name for it), a Jinja template
that receives `messages` (each a dict with `role` and `content`), `add_generation_prompt`, `bos_token` and
`eos_token`, and may call `raise_exception(message)`. A tokenizer that brings its own template (the
`chat_template` of a `tokenizer_config.json` in the model directory) takes precedence; serving renders either
with jinja2's sandbox. Stdlib only: the file is text.

The default, for this project's base model (trained on plain text, never on dialogues), is a plain
transcript the base model can continue:

    System text, if any, then a blank line
    User: <content>
    Assistant: <content><|endoftext|>
    ...
    Assistant:

A base model is not instruction-tuned: it continues the transcript, and may write the next "User:" turn
itself unless the request's `stop` includes "\\nUser:".
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # a Hugging Face tokenizer's own settings, template included

DEFAULT_CHAT_TEMPLATE = """\
{%- for message in messages -%}
  {%- if message['role'] == 'system' -%}
    {{ message['content'] }}{{ '\\n\\n' }}
  {%- elif message['role'] == 'user' -%}
    {{ 'User: ' ~ message['content'] ~ '\\n' }}
  {%- elif message['role'] == 'assistant' -%}
    {{ 'Assistant: ' ~ message['content'] ~ eos_token ~ '\\n' }}
  {%- else -%}
    {{ raise_exception("messages[" ~ loop.index0 ~ "].role must be system, user or assistant, got '"
                       ~ message['role'] ~ "'") }}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{ 'Assistant:' }}
{%- endif -%}
"""


def write_chat_template(model_dir: Path, template: str = DEFAULT_CHAT_TEMPLATE) -> None:
    """Writes the template into an exported model directory."""
    (Path(model_dir) / CHAT_TEMPLATE_FILE).write_text(template)
