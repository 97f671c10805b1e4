"""Incremental detokenization: pieces add up to the decoded text, multi-byte characters included."""

from __future__ import annotations

import pytest

from jax_llm.serving.engine.detokenize import IncrementalText

TEXTS = ["def main(argv):\n    return 0\n", "naïve café — 日本語のテキスト 🎉🎉 done", "x" * 50]


@pytest.mark.parametrize("text", TEXTS)
def test_pieces_concatenate_to_the_text_and_never_show_half_a_character(tiny_tokenizer, text):
    ids = tiny_tokenizer.encode(text).ids
    decoder = IncrementalText(tiny_tokenizer)
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.finish())
    assert "".join(pieces) == decoder.text == text
    assert not any("\ufffd" in p for p in pieces)


def test_finish_releases_a_truncated_character(tiny_tokenizer):
    ids = tiny_tokenizer.encode("🎉").ids
    assert len(ids) > 1  # an emoji is split into byte tokens by this small vocabulary
    decoder = IncrementalText(tiny_tokenizer)
    assert decoder.push(ids[0]) == ""
    assert decoder.finish() != "" and decoder.text == tiny_tokenizer.decode(ids[:1])
