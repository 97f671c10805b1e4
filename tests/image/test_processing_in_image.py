"""A processing job in a container of the image: `prepare` on SageMaker's processing layout."""

from __future__ import annotations

import json

from jax_llm.data.shards import read_header
from local_mode.runner import run_processing
from tests.support import CORPUS_MODULES, write_stdlib_corpus


def test_prepare_reads_its_input_and_writes_the_tokenizer_and_shards_where_the_job_config_says(
    image, tmp_path
) -> None:
    raw = tmp_path / "raw"  # one document per file: the validation output gets every second one
    for i, module in enumerate(CORPUS_MODULES):
        write_stdlib_corpus(raw / f"{i}.txt", (module,))
    outputs = {name: tmp_path / "prepared" / name for name in ("tokenizer", "train", "validation")}
    lines: list[str] = []
    result = run_processing(
        tmp_path / "work",
        "image-prepare",
        inputs={"raw": raw},
        outputs=outputs,
        arguments=["prepare", "--vocab-size", "300", "--validation-fraction", "0.5"],
        engine=image,
        log=lines.append,
    )
    assert result.ok, "\n".join(lines[-30:])
    config = json.loads(result.trees["algo-1"].processing_job_config.read_text())
    (raw,) = config["ProcessingInputs"]
    assert raw["S3Input"]["LocalPath"] == "/opt/ml/processing/input/raw"  # as the container sees it
    assert json.loads((outputs["tokenizer"] / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    shards = sorted(outputs["train"].glob("*.bin")) + sorted(outputs["validation"].glob("*.bin"))
    assert len(shards) >= 2 and all(read_header(shard)["vocab_size"] == 300 for shard in shards)
