"""Does a seeded request's text change with its batch neighbours? Counts it on a random tiny model.

    PYTHONPATH=.:containers/jax-llm .venv/bin/python bench/seeded_neighbours.py [--requests 48]

Each seeded request (24 sampled tokens) runs alone on an idle engine, then again with a longer-prompt
neighbour beside it in an 8-slot batch (other decode batch and key-length buckets, so other compiled
shapes); prints how many of the texts differ. See docs/serving.md ("Seeded sampling") for what is
reproducible and why a flip remains possible.
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import time
from pathlib import Path

import jax

from bench.serve_load import build_model, machine
from jax_llm.data.tokenizer import load_tokenizer
from jax_llm.model.export import TOKENIZER_FILE, load_model
from jax_llm.serving.engine.engine import Engine
from jax_llm.serving.engine.runner import ModelRunner
from jax_llm.serving.engine.types import GenerateRequest, GenerationParams
from jax_llm.serving.settings import ServingSettings

SLOTS = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48)
    args = parser.parse_args(argv)
    model_dir = build_model(Path(tempfile.mkdtemp(prefix="seeded-")), "tiny")
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir / TOKENIZER_FILE)
    buckets = ServingSettings(model_dir=model_dir).prompt_buckets(model.config.max_seq_len)
    runner = ModelRunner(model, SLOTS, buckets, 1, tokenizer.get_vocab_size(with_added_tokens=True))
    runner.warm_up()
    engine = Engine(runner, tokenizer, max_queue=256, default_max_new_tokens=24)
    engine.start()

    def run(requests: list[GenerateRequest]) -> list[str]:
        finals = []
        for request in requests:
            done: queue.Queue = queue.Queue()

            def sink(token, final, done=done):
                return final and done.put(final)

            engine.submit(engine.prepare(request), time.monotonic() + 120, [sink], stream=False)
            finals.append(done)
        return [done.get(timeout=120).text for done in finals]

    def sampled(prompt: str, tokens: int, seed: int) -> GenerateRequest:
        params = GenerationParams(max_new_tokens=tokens, do_sample=True, seed=seed)
        return GenerateRequest((prompt,), False, params, stream=False)

    seeded = [sampled(f"def f{i}(x):", 24, i) for i in range(args.requests)]
    alone = [run([request])[0] for request in seeded]
    neighbours = [sampled("x = [" + "1, " * (5 + 3 * (i % 12)), 40, 1000 + i) for i in range(args.requests)]
    mixed = run([r for pair in zip(neighbours, seeded) for r in pair])[1::2]
    differ = sum(a != b for a, b in zip(alone, mixed))
    print(f"machine: {machine()}; device {jax.devices()[0].device_kind}")
    print(
        f"seeded texts that differ alone vs beside longer neighbours ({SLOTS} slots): {differ}/{args.requests}"
    )
    engine.stop(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
