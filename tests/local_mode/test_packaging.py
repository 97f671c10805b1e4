"""Model data: model.tar.gz packed as SageMaker packs /opt/ml/model and unpacked into a fresh serving tree, or
the uncompressed files copied out and in as they are."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from local_mode.packaging import PackagingError, package_model, unpack_model


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_model_round_trips_into_a_fresh_serving_tree(tmp_path: Path) -> None:
    model = tmp_path / "train" / "model"
    write(model / "config.json", b'{"format_version": 1}')
    write(model / "params.npz", bytes(range(256)) * 100)
    write(model / "sub" / "extra.txt", b"x")
    archive = tmp_path / "output" / "model.tar.gz"

    assert package_model([model], archive) == ["config.json", "params.npz", "sub/extra.txt"]
    with tarfile.open(archive, "r:gz") as tar:  # members sit at the top level, not under model/
        assert sorted(tar.getnames()) == ["config.json", "params.npz", "sub/extra.txt"]

    paths = unpack_model(archive, tmp_path / "serve")
    for name in ("config.json", "params.npz", "sub/extra.txt"):
        assert (paths.model / name).read_bytes() == (model / name).read_bytes()
    assert sorted(p.name for p in paths.root.iterdir()) == ["model"]  # nothing else from training leaks in


def test_several_hosts_contribute_each_path_once_first_host_wins(tmp_path: Path) -> None:
    write(tmp_path / "algo-1" / "model" / "params.npz", b"from algo-1")
    write(tmp_path / "algo-2" / "model" / "params.npz", b"from algo-2")
    write(tmp_path / "algo-2" / "model" / "only-2.txt", b"2")
    archive = tmp_path / "model.tar.gz"
    package_model([tmp_path / "algo-1" / "model", tmp_path / "algo-2" / "model"], archive)
    paths = unpack_model(archive, tmp_path / "serve")
    assert (paths.model / "params.npz").read_bytes() == b"from algo-1"
    assert (paths.model / "only-2.txt").read_bytes() == b"2"


def test_an_empty_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(PackagingError, match="exported no model"):
        package_model([tmp_path / "model"], tmp_path / "model.tar.gz")
    assert not (tmp_path / "model.tar.gz").exists()


def test_an_archive_escaping_the_model_directory_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(tarfile.TarError):
        unpack_model(archive, tmp_path / "serve")
    assert not (tmp_path / "outside.txt").exists()


def test_a_missing_archive_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="does not exist"):
        unpack_model(tmp_path / "nope.tar.gz", tmp_path / "serve")


def test_an_uncompressed_model_is_copied_out_and_into_a_serving_tree_as_it_is(tmp_path: Path) -> None:
    """CompressionType NONE: the hosts' model/ files under the output prefix (first host wins, as in the
    archive), then copied into a fresh tree's model/ (ModelDataSource, no compression): no tar either way."""
    write(tmp_path / "algo-1" / "model" / "config.json", b"one")
    write(tmp_path / "algo-1" / "model" / "sub" / "extra.txt", b"x")
    write(tmp_path / "algo-2" / "model" / "config.json", b"two")
    prefix = tmp_path / "output" / "model"
    hosts = [tmp_path / "algo-1" / "model", tmp_path / "algo-2" / "model"]
    assert package_model(hosts, prefix, "NONE") == ["config.json", "sub/extra.txt"]
    assert (prefix / "config.json").read_bytes() == b"one"
    assert not list(tmp_path.rglob("*.tar.gz"))
    paths = unpack_model(prefix, tmp_path / "serve")
    assert (paths.model / "config.json").read_bytes() == b"one"
    assert (paths.model / "sub" / "extra.txt").read_bytes() == b"x"
    assert sorted(p.name for p in paths.root.iterdir()) == ["model"]


def test_an_empty_model_directory_and_an_unknown_compression_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackagingError, match="holds no files"):
        unpack_model(tmp_path / "empty", tmp_path / "serve")
    write(tmp_path / "model" / "config.json", b"{}")
    with pytest.raises(PackagingError, match="GZIP, NONE"):
        package_model([tmp_path / "model"], tmp_path / "out", "ZSTD")
