"""Chat messages to a prompt: the exported template, the tokenizer's own first, refusals as 422s."""

from __future__ import annotations

import json

import pytest

from jax_llm.data.tokenizer import EOS_TOKEN
from jax_llm.model.chat_template import CHAT_TEMPLATE_FILE, DEFAULT_CHAT_TEMPLATE
from jax_llm.serving.api.chat import ChatTemplate
from jax_llm.serving.engine.types import RequestError

DIALOGUE = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "A loop?"},
    {"role": "assistant", "content": "for x in y:"},
    {"role": "user", "content": "Shorter?"},
]


def test_the_trained_model_is_exported_with_its_chat_template(tiny_training_run):
    assert (tiny_training_run.model_dir / CHAT_TEMPLATE_FILE).read_text() == DEFAULT_CHAT_TEMPLATE


def test_the_default_template_is_a_transcript_ending_with_the_assistant_s_turn(tiny_training_run):
    template = ChatTemplate.from_model_dir(tiny_training_run.model_dir, EOS_TOKEN)
    assert template.render(DIALOGUE) == (
        "You write Python.\n\nUser: A loop?\nAssistant: for x in y:<|endoftext|>\nUser: Shorter?\nAssistant:"
    )
    without_prompt = template.render(DIALOGUE[:2], add_generation_prompt=False)
    assert without_prompt == "You write Python.\n\nUser: A loop?\n"


def test_the_tokenizer_s_own_template_takes_precedence(tmp_path):
    (tmp_path / CHAT_TEMPLATE_FILE).write_text(DEFAULT_CHAT_TEMPLATE)
    own = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}<|assistant|>"
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": own, "eos_token": "</s>"}))
    template = ChatTemplate.from_model_dir(tmp_path, EOS_TOKEN)
    assert template.render(DIALOGUE[1:2]) == "<|user|>A loop?</s><|assistant|>"


def test_a_model_exported_before_templates_gets_the_default(tmp_path):
    template = ChatTemplate.from_model_dir(tmp_path, EOS_TOKEN)
    assert template.render(DIALOGUE[1:2]) == "User: A loop?\nAssistant:"


def test_a_role_the_template_does_not_know_is_a_422_naming_it(tmp_path):
    template = ChatTemplate.from_model_dir(tmp_path, EOS_TOKEN)
    with pytest.raises(RequestError) as caught:
        template.render([{"role": "tool", "content": "42"}])
    assert caught.value.status == 422 and caught.value.param == "messages"
    assert "messages[0].role" in caught.value.message and "'tool'" in caught.value.message


def test_the_template_runs_sandboxed(tmp_path):
    (tmp_path / CHAT_TEMPLATE_FILE).write_text("{{ messages.__class__.__mro__ }}")
    with pytest.raises(RequestError) as caught:
        ChatTemplate.from_model_dir(tmp_path, EOS_TOKEN).render(DIALOGUE)
    assert caught.value.status == 422
