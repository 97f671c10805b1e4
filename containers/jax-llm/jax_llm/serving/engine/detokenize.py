"""Incremental detokenization: text pieces per token that concatenate exactly to the whole decoded text.

A byte-level BPE token can end in the middle of a UTF-8 character; decoding it alone gives U+FFFD.
Pieces are held back until the character completes (TGI's prefix/read offsets), and `finish` releases
whatever is left, so a stream's pieces always add up to the non-streamed text.
"""

from __future__ import annotations

from tokenizers import Tokenizer

# Decoding re-reads only the last few tokens: enough for any UTF-8 character a byte-level BPE splits.
_WINDOW = 8


class IncrementalText:
    """The text of a growing sequence of token ids, handed out one piece per token."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # ids[_prefix:_read] were decoded already; kept as context for the next piece
        self._read = 0
        self.text = ""  # the pieces handed out so far, concatenated

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Adds a token and returns the new complete text it adds ("" while a character is unfinished)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            if len(self._ids) - self._prefix > _WINDOW:  # not UTF-8 that will complete: stop waiting
                return self.finish()
            return ""
        piece = after[len(before) :]
        self._prefix, self._read = self._read, len(self._ids)
        self.text += piece
        return piece

    def finish(self) -> str:
        """Releases the held-back text (possibly with U+FFFD for a truncated character)."""
        rest = self._decode(self._ids[self._prefix :])[
            len(self._decode(self._ids[self._prefix : self._read])) :
        ]
        self._prefix = self._read = len(self._ids)
        self.text += rest
        return rest
