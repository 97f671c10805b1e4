"""Model data as SageMaker moves it: `model.tar.gz` made from `/opt/ml/model` after training and unpacked
before `serve`, or, uncompressed (a training job's `OutputDataConfig.CompressionType: NONE`, a model's
`ModelDataSource` with `CompressionType: None`), the files themselves under an S3 prefix, copied as is."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

from jax_llm.contract.paths import COMPRESSION_TYPES, SageMakerPaths
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


def copy_directories(directories: Sequence[Path], prefix: Path) -> list[str]:
    """The files of `directories` copied under `prefix` as SageMaker uploads uncompressed output: the same
    members, and the same first-host-wins rule, as `pack_directories`. Returns the members."""
    members: list[str] = []
    for directory in directories:
        for path in _files(directory):
            name = path.relative_to(directory).as_posix()
            if name not in members:
                (prefix / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, prefix / name)
                members.append(name)
    return members


def pack_source(source_dir: Path, archive: Path) -> list[str]:
    """`sourcedir.tar.gz` of a user's source directory, as the SDK packs `source_dir` for script mode."""
    if not Path(source_dir).is_dir():
        raise PackagingError(f"source directory {source_dir} does not exist")
    return pack_directories([Path(source_dir)], archive)


def package_model(model_dirs: Sequence[Path], destination: Path, compression: str = "GZIP") -> list[str]:
    """The hosts' `model/` directories as `destination`: a `model.tar.gz` (GZIP), or a directory of the same
    files (NONE, the S3 prefix of uncompressed output). Refuses an empty model (nothing exported)."""
    if compression not in COMPRESSION_TYPES:
        raise PackagingError(f"compression {compression!r} must be one of {', '.join(COMPRESSION_TYPES)}")
    if not any(_files(Path(d)) for d in model_dirs if Path(d).is_dir()):
        raise PackagingError(
            f"no files in {', '.join(map(str, model_dirs))}: the training job exported no model"
        )
    existing = [Path(d) for d in model_dirs if Path(d).is_dir()]
    if compression == "NONE":
        return copy_directories(existing, destination)
    return pack_directories(existing, destination)


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


def unpack_model(model_data: Path, root: Path) -> SageMakerPaths:
    """A fresh serving tree at `root` with `model_data` in `model/`, as an endpoint instance gets it: a
    `model.tar.gz` is unpacked; a directory (an uncompressed model's S3 prefix) is copied as it is."""
    model_data = Path(model_data)
    if model_data.is_dir():
        if not _files(model_data):
            raise PackagingError(f"model directory {model_data} holds no files")
        paths = SageMakerPaths(fresh_root(root))
        shutil.copytree(model_data, paths.model, symlinks=False)
        return paths
    if not model_data.is_file():
        raise PackagingError(f"model data {model_data} does not exist (a model.tar.gz or a model directory)")
    paths = SageMakerPaths(fresh_root(root))
    paths.model.mkdir(parents=True)
    with tarfile.open(model_data, "r:gz") as tar:
        # The "data" filter refuses absolute paths, `..`, links out of the tree and device files.
        tar.extractall(paths.model, filter="data")
    return paths
