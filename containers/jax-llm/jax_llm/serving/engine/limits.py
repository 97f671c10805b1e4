"""What the engine can hold: the range of every per-request value, as its arrays store them.

The engine keeps each slot's settings in fixed-width arrays (`runner.SlotParams`: int32 top-k, float32
temperature and top-p, a 64-bit seed as two uint32 words) and compares stop strings against the text it
generates. A value outside these ranges cannot be stored; the API layer checks every client value against
them before anything reaches the engine thread, and names the limit in its refusal. No JAX here: the HTTP
side imports this before the model loads.
"""

from __future__ import annotations

INT32_MAX = 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max

MAX_TOP_K = INT32_MAX  # SlotParams.top_k is int32; values past the vocabulary keep every token
MAX_TEMPERATURE = FLOAT32_MAX  # SlotParams.temperature is float32
SEED_BITS = 64  # SlotParams.key_data holds the seed as two uint32 words
MAX_STOP_SEQUENCES = 8
MAX_STOP_CHARS = 512  # per stop string: streamed answers hold back up to this many characters
# How much of a prompt is tokenized at most: a prompt of more UTF-8 bytes than the context holds tokens
# times the longest token's bytes cannot fit, and is refused (or cut, with TGI's `truncate`) before the
# tokenizer runs on it (tokenizing megabytes holds the interpreter for seconds).
TRUNCATE_MARGIN_BYTES = 4096  # kept before the cut point when truncating, so the kept tokens are unchanged
