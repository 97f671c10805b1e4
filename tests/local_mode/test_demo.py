"""The demo's own parts: its stdlib corpus, and the step-0 model its "before" samples come from."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

from local_mode.demo import SKIPPED_PACKAGES, build_corpus, untrained_archive


def test_the_corpus_is_real_python_source_within_the_budget(tmp_path: Path) -> None:
    files, size = build_corpus(tmp_path / "raw", 400_000)
    written = sorted((tmp_path / "raw").iterdir())
    assert len(written) == files > 10 and 350_000 < size <= 400_000
    assert sum(len(p.read_text(encoding="utf-8")) for p in written) == size
    for path in written:
        assert path.suffix == ".txt"  # a raw-text suffix `prepare` reads
        assert not SKIPPED_PACKAGES.intersection(path.name.split("__")[:-1])
        compile(path.read_text(encoding="utf-8"), str(path), "exec")  # source a person wrote, not data


def test_the_before_model_is_the_trainers_own_step_0_initialization(
    tmp_path: Path, tiny_training_run
) -> None:
    from jax_llm.contract.hyperparameters import TrainConfig
    from jax_llm.model.export import read_model_config
    from jax_llm.training.optimizer import make_optimizer
    from jax_llm.training.sharding import make_mesh
    from jax_llm.training.train_step import create_train_state

    seed = json.loads(
        json.loads((tiny_training_run.root / "input/config/hyperparameters.json").read_text())["seed"]
    )
    archive = untrained_archive(tiny_training_run.model_dir, seed, tmp_path / "untrained")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert (
        json.loads((tmp_path / "unpacked" / "config.json").read_text())["model"]
        == json.loads((tiny_training_run.model_dir / "config.json").read_text())["model"]
    )

    # What the trainer starts from: its own init of the same config and seed.
    config = read_model_config(tiny_training_run.model_dir)
    state = create_train_state(config, make_optimizer(TrainConfig(preset="tiny")), seed, make_mesh(), False)
    from flax import nnx

    expected = {
        ".".join(map(str, k)): np.asarray(v.get_value())
        for k, v in nnx.to_flat_state(nnx.state(state.model(), nnx.Param))
    }
    with (
        np.load(tmp_path / "unpacked" / "params.npz") as before,
        np.load(tiny_training_run.model_dir / "params.npz") as trained,
    ):
        assert set(before.files) == set(expected)
        for key, value in expected.items():
            # Same draws; jit (the trainer) and eager (here) may round the init scale's product 1 ulp apart.
            np.testing.assert_allclose(before[key], value, rtol=1e-6, atol=1e-9, err_msg=key)
        assert any(not np.array_equal(before[k], trained[k]) for k in before.files)  # and training moved it
