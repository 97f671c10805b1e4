"""The memory plan: the checked-in table is what XLA's analysis gives now, and `plan` prints a plan.

Recomputing the whole table takes many minutes of compiling; these tests recompute one measured point
of the tiny Llama row and one of the 7b row (the same compile the table's fit used) and check that every
row's facts and fit follow from its stored measurements.
"""

import json
import os
import subprocess
import sys

import pytest

from jax_llm.contract.memory_plan import table, training_need
from jax_llm.training.memory_plan import FIT_FSDP, FIT_ROWS, FIT_SEQ, TABLE_PRESETS, preset_facts
from tests.support import CONTAINER_SRC, REPO

ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(CONTAINER_SRC)}

RECOMPUTE = r"""
import json, sys
from jax_llm.training.memory_plan import _start_jax, compile_train_step, FIT_FSDP, FIT_ROWS, FIT_SEQ
_start_jax(FIT_FSDP)
out = {p: compile_train_step(p, (1, FIT_FSDP), FIT_ROWS[0], FIT_SEQ, remat=True)["temporaries"]
       for p in sys.argv[1:]}
print(json.dumps(out))
"""


def test_every_preset_has_a_row_whose_facts_are_the_model_configs():
    rows = table()["presets"]
    assert set(rows) == set(TABLE_PRESETS)
    for preset, row in rows.items():
        assert {k: row[k] for k in preset_facts(preset)} == preset_facts(preset), preset


@pytest.mark.parametrize("preset", TABLE_PRESETS)
def test_each_fit_reproduces_the_measurements_it_was_made_from(preset):
    row = table()["presets"][preset]
    gradients = 4 * row["num_params"] // FIT_FSDP
    for remat in (True, False):
        measured = row["training"]["remat" if remat else "no_remat"]["measured_temporaries"]
        for point, temporaries in measured.items():
            rows, seq = map(int, point.split("x"))
            need = training_need(preset, seq, remat, FIT_FSDP, rows)
            assert abs(need.activations + gradients - temporaries) <= 2, (preset, remat, point)


def test_table_equals_a_fresh_compile():
    out = subprocess.run(
        [sys.executable, "-c", RECOMPUTE, "tiny-llama", "7b"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    for preset, temporaries in fresh.items():
        stored = table()["presets"][preset]["training"]["remat"]["measured_temporaries"]
        assert stored[f"{FIT_ROWS[0]}x{FIT_SEQ}"] == temporaries, (
            f"{preset}: the table is stale; run python -m jax_llm plan --write-table"
        )


def test_plan_command_prints_xla_breakdown_and_largest_micro_batch():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jax_llm",
            "plan",
            "--preset",
            "tiny-llama",
            "--instance-type",
            "ml.g5.12xlarge",
            "--instance-count",
            "2",
            "--batch-size",
            "16",
            "--seq-len",
            "128",
            "--slots",
            "4",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "mesh data x fsdp = 2x4" in text and "2 sequence(s) of 128 tokens per GPU" in text
    for part in (
        "parameters (fp32)",
        "AdamW moments (fp32)",
        "gradients (fp32)",
        "activations, temporaries",
        "peak",
        "largest micro-batch that fits",
        "serving on ml.g5.12xlarge, 4 slots x 128 tokens",
    ):
        assert part in text, part
    assert "fits in" in text


def test_docs_plan_tables_are_the_tables_the_plan_prints():

    from jax_llm.training.memory_plan import markdown_tables

    docs = (REPO / "docs" / "scale.md").read_text()
    assert markdown_tables() in docs, "docs/scale.md is stale: paste `python -m jax_llm plan --markdown`"
