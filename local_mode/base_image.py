"""The image's base: the Dockerfile's default from a registry, or the same OS made from Debian's archive.

Where a container registry answers, the default (`BASE_IMAGE` in the Dockerfile, Debian 12 slim) is pulled
as usual. Where none does, as on this project's CI machines, which reach only package registries, a
Debian 12 minbase root file system is made with mmdebstrap from Debian's archive and imported as
`localhost/jax-llm-base:bookworm`; it holds what the slim image holds, and the Dockerfile installs the rest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from jax_llm.contract.paths import IMAGE_SOURCE

BASE_VARIABLE = "LOCAL_MODE_BASE_IMAGE"  # a base image to build on, taken as it is
MIRROR_VARIABLE = "LOCAL_MODE_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"  # Debian 12, the release of the Dockerfile's default base
LOCAL_BASE = f"localhost/jax-llm-base:{SUITE}"
PULL_TIMEOUT_S = 300


class BaseImageError(RuntimeError):
    """Neither a registry nor mmdebstrap can provide the base image."""


def dockerfile_default() -> str:
    """The Dockerfile's own `ARG BASE_IMAGE=` default: the one place the shipped base is named."""
    (default,) = re.findall(
        r"^ARG BASE_IMAGE=(\S+)$", (IMAGE_SOURCE / "Dockerfile").read_text(), re.MULTILINE
    )
    return default


def _has_image(engine: str, image: str) -> bool:
    return subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode == 0


def _pull(engine: str, image: str) -> str | None:
    """None when `image` was pulled; otherwise the engine's last words."""
    try:
        pulled = subprocess.run(
            [engine, "pull", image], capture_output=True, text=True, timeout=PULL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {PULL_TIMEOUT_S} s"
    if pulled.returncode == 0:
        return None
    return (pulled.stderr.strip().splitlines() or [f"exit {pulled.returncode}"])[-1]


def debian_sources(mirror: str) -> list[str]:
    """The apt sources of Debian's own slim image: the release, its updates and its security archive."""
    security = re.sub(r"/debian/?$", "/debian-security", mirror)
    return [
        f"deb {mirror} {SUITE} main",
        f"deb {mirror} {SUITE}-updates main",
        f"deb {security} {SUITE}-security main",
    ]


def make_local_base(engine: str, log: Callable[[str], None], mirror: str | None = None) -> str:
    """Makes Debian 12 minbase with mmdebstrap and imports it into `engine` as LOCAL_BASE."""
    mirror = mirror or os.environ.get(MIRROR_VARIABLE) or DEFAULT_MIRROR
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise BaseImageError(
            f"no container registry gave {dockerfile_default()} and mmdebstrap is not installed to make "
            "the same OS from Debian's archive: install it (apt-get install mmdebstrap), or name a base "
            f"image this engine has in {BASE_VARIABLE}"
        )
    log(f"making {LOCAL_BASE} from {mirror} with mmdebstrap (Debian 12 minbase, about a minute)")
    with tempfile.TemporaryDirectory(prefix="jax-llm-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        made = subprocess.run(
            [mmdebstrap, "--variant=minbase", "--quiet", SUITE, str(tarball), *debian_sources(mirror)],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise BaseImageError(f"mmdebstrap failed (exit {made.returncode}):\n{made.stderr[-3000:]}")
        subprocess.run([engine, "import", str(tarball), LOCAL_BASE], check=True, capture_output=True)
    return LOCAL_BASE


def resolve(engine: str, log: Callable[[str], None]) -> str:
    """The base to build on: LOCAL_MODE_BASE_IMAGE, else the default (present or pulled), else LOCAL_BASE."""
    if chosen := os.environ.get(BASE_VARIABLE, "").strip():
        return chosen
    default = dockerfile_default()
    if _has_image(engine, default):
        return default
    if _has_image(engine, LOCAL_BASE):  # made by an earlier run that found no registry
        return LOCAL_BASE
    reason = _pull(engine, default)
    if reason is None:
        return default
    log(f"no registry gave {default} ({reason})")
    return make_local_base(engine, log)
