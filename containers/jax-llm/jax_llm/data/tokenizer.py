"""The byte-level BPE tokenizer: trained with `tokenizers` on local text, saved as `tokenizer.json`.

Byte-level means every UTF-8 string encodes (no unknown token) and `decode(encode(x)) == x`.
Documents are joined with `EOS_TOKEN`, a special token that the BPE never splits or merges into.
Nothing is downloaded: the tokenizer is trained here or read from a file the job was given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from jax_llm.contract.hyperparameters import MIN_VOCAB_SIZE

EOS_TOKEN = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used (unreadable, not a tokenizer, or without `EOS_TOKEN`)."""


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Trains a byte-level BPE with at most `vocab_size` tokens (fewer if the text has fewer merges).

    Deterministic: the same texts in the same order give the same tokenizer on every host.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 bytes + {EOS_TOKEN}), got {vocab_size}"
        )
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False keeps the round trip exact (no space is invented before the first word).
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen in the text or not
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> Path:
    """Writes `tokenizer` as JSON to `path` (parents created) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def load_tokenizer(path: Path) -> Tokenizer:
    """Reads a `tokenizer.json`; raises TokenizerError naming the path if it is unusable."""
    path = Path(path)
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for malformed JSON
        raise TokenizerError(f"{path}: not a readable tokenizer.json ({error})") from error
    if tokenizer.token_to_id(EOS_TOKEN) is None:
        raise TokenizerError(f"{path}: the tokenizer has no {EOS_TOKEN} token")
    return tokenizer


def eos_id(tokenizer: Tokenizer) -> int:
    """The id of `EOS_TOKEN`, which separates documents in the token stream."""
    token_id = tokenizer.token_to_id(EOS_TOKEN)
    if token_id is None:
        raise TokenizerError(f"the tokenizer has no {EOS_TOKEN} token")
    return token_id


def fingerprint(tokenizer: Tokenizer) -> str:
    """A short hash of the tokenizer's canonical JSON: shards record it so a mismatch is caught."""
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]
