"""`python -m jax_llm {train,serve,prepare,track,plan,compile-cache}`: the image's ENTRYPOINT dispatches here."""

import importlib
import sys

# Each command's module exposes main() -> exit code. Imported lazily: `serve` need not load the trainer.
COMMANDS = {
    "train": "jax_llm.training.train",
    "serve": "jax_llm.serving.server",
    "prepare": "jax_llm.data.prepare",
    "track": "jax_llm.training.track_job",
    "plan": "jax_llm.training.memory_plan",
    "compile-cache": "jax_llm.serving.compile_cache",
}


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in COMMANDS:
        print(f"usage: python -m jax_llm {{{','.join(COMMANDS)}}} [args...]", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
