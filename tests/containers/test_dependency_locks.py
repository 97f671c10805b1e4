"""The image's locks: complete, hash-checked, and in step with the pins they were made from (`make lock`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import CONTAINER_SRC

CONTAINER = CONTAINER_SRC
LOCKS = {"requirements.lock": "requirements.txt", "requirements-cuda.lock": "requirements-cuda.txt"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file, following `-r`; extras are dropped from the name."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= pins(path.parent / line[3:].strip())
        elif match := re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line):
            found[_name(match[1])] = match[3]
    return found


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a lock written with --generate-hashes."""
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
        path.read_text(),
        re.MULTILINE,
    )
    return {_name(name): (version, hashes.count("--hash=")) for name, version, hashes in entries}


@pytest.mark.parametrize("lock, source", LOCKS.items())
def test_every_pin_is_locked_at_its_version(lock: str, source: str) -> None:
    entries = locked(CONTAINER / lock)
    disagree = {
        name: (version, entries.get(name, ("missing", 0))[0])
        for name, version in pins(CONTAINER / source).items()
        if entries.get(name, ("missing",))[0] != version
    }
    assert disagree == {}, f"{source} and {lock} disagree (pin, lock): {disagree}; run `make lock`"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_carries_hashes_and_the_lock_is_whole(lock: str) -> None:
    text = (CONTAINER / lock).read_text()
    entries = locked(CONTAINER / lock)
    requirement_lines = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9_.-]+==", line)]
    assert len(entries) == len(requirement_lines) > 20  # every entry parsed, each with its hashes
    assert all(count >= 1 for _, count in entries.values())


def test_the_gpu_image_runs_the_cpu_image_s_versions_plus_cuda() -> None:
    cpu, gpu = locked(CONTAINER / "requirements.lock"), locked(CONTAINER / "requirements-cuda.lock")
    assert {n: v for n, (v, _) in cpu.items()} == {n: gpu[n][0] for n in cpu}  # what CI tests is what ships
    jax = cpu["jax"][0]
    assert gpu["jax-cuda12-plugin"][0] == gpu["jax-cuda12-pjrt"][0] == jax  # the plugin matches jax
    assert pins(CONTAINER / "requirements-cuda.txt")["jax"] == pins(CONTAINER / "requirements.txt")["jax"]
