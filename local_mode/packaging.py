"""`model.tar.gz` as SageMaker makes it from `/opt/ml/model` after training, and unpacks it before `serve`."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

from jax_llm.contract.paths import SageMakerPaths
from local_mode.tree import fresh_root



class PackagingError(ValueError):
    """No model to package, or an archive that cannot be served."""


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def pack_directories(directories: Sequence[Path], archive: Path) -> list[str]:
    """Tars the contents of `directories` into `archive`, members relative to each (as SageMaker uploads).

    With several hosts each host's directory is added in host order; a path written by two hosts is kept once,
    from the first, which is why the contract says to write the model from one host only. Returns the members.
    """
    archive.parent.mkdir(parents=True, exist_ok=True)
    members: list[str] = []
    with tarfile.open(archive, "w:gz") as tar:
        for directory in directories:
            for path in _files(directory):
                name = path.relative_to(directory).as_posix()
                if name not in members:
                    tar.add(path, arcname=name, recursive=False)
                    members.append(name)
    return members


def pack_source(source_dir: Path, archive: Path) -> list[str]:
    """`sourcedir.tar.gz` of a user's source directory, as the SDK packs `source_dir` for script mode."""
    if not Path(source_dir).is_dir():
        raise PackagingError(f"source directory {source_dir} does not exist")
    return pack_directories([Path(source_dir)], archive)


def package_model(model_dirs: Sequence[Path], archive: Path) -> list[str]:
    """`model.tar.gz` from the hosts' `model/` directories; refuses an empty model (nothing exported)."""
    if not any(_files(Path(d)) for d in model_dirs if Path(d).is_dir()):
        raise PackagingError(
            f"no files in {', '.join(map(str, model_dirs))}: the training job exported no model"
        )
    return pack_directories([Path(d) for d in model_dirs if Path(d).is_dir()], archive)


def add_code(model_dir: Path, source_dir: Path, entry_point: str) -> None:
    """`source_dir` copied into `model_dir/code/`, as the SDK repacks a model for its inference handler."""
    source_dir = Path(source_dir)
    if not (source_dir / entry_point).is_file():
        raise PackagingError(f"entry point {entry_point!r} is not in the source directory {source_dir}")
    shutil.copytree(
        source_dir,
        Path(model_dir) / "code",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def unpack_model(archive: Path, root: Path) -> SageMakerPaths:
    """A fresh serving tree at `root`, `archive` unpacked into `model/`, as an endpoint instance gets it."""
    archive = Path(archive)
    if not archive.is_file():
        raise PackagingError(f"model archive {archive} does not exist")
    paths = SageMakerPaths(fresh_root(root))
    paths.model.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        # The "data" filter refuses absolute paths, `..`, links out of the tree and device files.
        tar.extractall(paths.model, filter="data")
    return paths
