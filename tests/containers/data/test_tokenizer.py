"""The byte-level BPE: exact round trips, the EOS token, determinism across processes, load errors."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from jax_llm.data.tokenizer import (
    EOS_TOKEN,
    TokenizerError,
    eos_id,
    fingerprint,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from tests.support import REPO

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CORPUS = [p.read_text(encoding="utf-8") for p in sorted((STDLIB / "json").glob("*.py"))]
ODD_TEXT = "  héllo\tWörld\r\n日本語 🙂\x00 trailing space \n\n" + EOS_TOKEN + "next document"


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=600)


def test_every_string_round_trips_exactly(tokenizer):
    for text in [ODD_TEXT, CORPUS[0][:5000], "", " ", "\n"]:
        ids = tokenizer.encode(text).ids
        assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_vocabulary_has_the_requested_size_with_eos_as_one_special_token(tokenizer):
    assert tokenizer.get_vocab_size() == 600
    eos = eos_id(tokenizer)
    assert tokenizer.encode(EOS_TOKEN).ids == [eos]
    # Inside text the EOS string is still one token, never split into bytes.
    assert tokenizer.encode("a" + EOS_TOKEN + "b").ids.count(eos) == 1
    # The BPE learnt merges from the corpus: real source code takes far fewer tokens than bytes.
    assert len(tokenizer.encode(CORPUS[0]).ids) < 0.5 * len(CORPUS[0].encode())


def test_training_is_deterministic_across_processes(tokenizer):
    # Every host trains its own tokenizer on the same files: they must agree bit for bit.
    script = (
        "import json, sys; from jax_llm.data.tokenizer import train_tokenizer; "
        "print(train_tokenizer(json.load(sys.stdin), 600).to_str())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(CORPUS),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": "containers/jax-llm", "PATH": "/usr/bin:/bin"},
        cwd=_repo(),
    )
    assert out.stdout.strip() == tokenizer.to_str()


def test_saved_tokenizer_loads_with_the_same_fingerprint_and_ids(tokenizer, tmp_path):
    path = save_tokenizer(tokenizer, tmp_path / "sub" / "tokenizer.json")
    loaded = load_tokenizer(path)
    assert fingerprint(loaded) == fingerprint(tokenizer)
    assert loaded.encode(ODD_TEXT).ids == tokenizer.encode(ODD_TEXT).ids
    assert fingerprint(train_tokenizer(CORPUS, vocab_size=700)) != fingerprint(tokenizer)


def test_unusable_files_are_errors_naming_the_path(tokenizer, tmp_path):
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(TokenizerError, match="garbage.json"):
        load_tokenizer(garbage)
    with pytest.raises(TokenizerError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    # A valid tokenizer without our EOS token cannot separate documents.
    config = json.loads(tokenizer.to_str())
    config["added_tokens"] = []
    config["model"]["vocab"].pop(EOS_TOKEN)
    no_eos = tmp_path / "no_eos.json"
    no_eos.write_text(json.dumps(config))
    with pytest.raises(TokenizerError, match=f"no_eos.json.*{EOS_TOKEN}"):
        load_tokenizer(no_eos)


def test_vocabulary_smaller_than_the_byte_alphabet_is_refused():
    with pytest.raises(ValueError, match="at least 257"):
        train_tokenizer(CORPUS, vocab_size=256)


def _repo() -> Path:
    return REPO
