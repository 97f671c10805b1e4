"""FSDP placement and the (data, fsdp) mesh shape: the `mesh` hyperparameter and its per-cluster default."""

import pytest
from jax.sharding import PartitionSpec as P

from jax_llm.contract.hyperparameters import HyperparameterError, parse_hyperparameters
from jax_llm.training.sharding import _fsdp_spec, default_mesh_shape, mesh_shape
from tests.support import REPO


def test_largest_divisible_dimension_is_sharded():
    assert _fsdp_spec((512, 64), 8) == P("fsdp", None)
    assert _fsdp_spec((64, 3 * 64), 8) == P(None, "fsdp")
    assert _fsdp_spec((6, 5), 4) == P()  # nothing divides: replicated
    assert _fsdp_spec((), 8) == P() and _fsdp_spec((512, 64), 1) == P()


def test_a_scanned_models_layer_axis_is_never_sharded():
    assert _fsdp_spec((64, 8, 16), 8, skip_leading=True) == P(None, None, "fsdp")
    assert _fsdp_spec((32, 4096), 8, skip_leading=True) == P(None, "fsdp")
    assert _fsdp_spec((40, 5), 8, skip_leading=True) == P()


def test_default_mesh_is_fsdp_inside_a_host_and_data_across_hosts():
    assert default_mesh_shape(4, 8) == (4, 8)  # 4 x p4de: FSDP on NVLink, data parallel over EFA
    assert default_mesh_shape(1, 8) == (1, 8)
    assert default_mesh_shape(4, 1) == (1, 4)  # one GPU per host: nothing to shard inside it, flat FSDP
    assert mesh_shape("auto", 4, 8) == (4, 8)
    assert mesh_shape("2x16", 4, 8) == (2, 16)
    with pytest.raises(
        ValueError, match=r"4x4 is 16 devices, but the cluster has 32 \(4 host\(s\) x 8\); auto"
    ):
        mesh_shape("4x4", 4, 8)


@pytest.mark.parametrize("value", ["4", "4x", "x8", "0x8", "4*8", "four"])
def test_a_malformed_mesh_hyperparameter_names_the_key(value):
    with pytest.raises(
        HyperparameterError, match=r"hyperparameter 'mesh': expected 'auto' or DATAxFSDP"
    ) as error:
        parse_hyperparameters({"mesh": value})
    assert error.value.key == "mesh"
    assert parse_hyperparameters({"mesh": '"4x8"'}).mesh == "4x8"


def test_docs_table_of_the_7b_shardings_is_what_the_code_does():
    """docs/scale.md's per-weight table for 7b on fsdp=8 against `describe_shardings` (shapes only, no memory)."""

    from flax import nnx

    from jax_llm.model.config import ModelConfig
    from jax_llm.model.gpt import GPT
    from jax_llm.training.sharding import describe_shardings

    config = ModelConfig.preset("7b")
    params = nnx.state(nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0))), nnx.Param)
    docs = (REPO / "docs" / "scale.md").read_text()
    for name, shape, spec in describe_shardings(params, 8):
        split = [i for i, axis in enumerate(spec) if axis == "fsdp"]
        shard = [n // 8 if i in split else n for i, n in enumerate(shape)]
        line = next((row for row in docs.splitlines() if row.startswith(f"| `{name}` |")), None)
        assert line is not None, f"docs/scale.md lacks {name}"
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[1] == str(list(shape)).replace(" ", "").replace(",", ", "), (name, cells)
        assert cells[2].startswith(f"dim {split[0]} ") and cells[2].endswith("over `fsdp`"), (name, cells)
        assert cells[3] == str(shard).replace(" ", "").replace(",", ", "), (name, cells)
