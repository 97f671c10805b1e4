"""`python -m jax_llm prepare`: the Processing job's paths, outputs the training channels accept, errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from jax_llm.contract.paths import SageMakerPaths
from jax_llm.data.channels import load_training_data
from jax_llm.data.prepare import main
from jax_llm.data.shards import open_shard, read_header
from jax_llm.data.tokenizer import EOS_TOKEN, load_tokenizer
from tests.support import REPO

STDLIB = Path(sysconfig.get_paths()["stdlib"])
DOCUMENTS = [
    p.read_text(encoding="utf-8")
    for package in ("json", "email")
    for p in sorted((STDLIB / package).glob("*.py"))
]  # 25 documents, ~400 KB


def processing_tree(
    root: Path,
    *,
    inputs: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
    hosts: int = 1,
    documents: list[str] = DOCUMENTS,
) -> SageMakerPaths:
    """A processing job's tree: processingjobconfig.json naming LocalPaths, the raw text, resourceconfig.json."""
    paths = SageMakerPaths(root)
    inputs = {"raw": str(root / "processing/input/raw")} if inputs is None else inputs
    outputs = (
        {n: str(root / f"processing/output/{n}") for n in ("tokenizer", "train", "validation")}
        if outputs is None
        else outputs
    )
    paths.processing_config.mkdir(parents=True)
    paths.processing_job_config.write_text(
        json.dumps(
            {
                "ProcessingJobName": "prepare-test",
                "ProcessingInputs": [
                    {"InputName": n, "S3Input": {"LocalPath": p, "S3Uri": f"s3://b/{n}"}}
                    for n, p in inputs.items()
                ],
                "ProcessingOutputConfig": {
                    "Outputs": [
                        {"OutputName": n, "S3Output": {"LocalPath": p, "S3Uri": f"s3://b/{n}"}}
                        for n, p in outputs.items()
                    ]
                },
            }
        )
    )
    paths.processing_resource_config.write_text(
        json.dumps({"current_host": "algo-1", "hosts": [f"algo-{i + 1}" for i in range(hosts)]})
    )
    raw = Path(next(iter(inputs.values())).replace("/opt/ml", str(root), 1))  # the first input holds the text
    raw.mkdir(parents=True)
    for i, document in enumerate(documents):
        (raw / f"doc-{i:03d}.txt").write_text(document)
    return paths


def run_prepare(paths: SageMakerPaths, monkeypatch, *args: str) -> int:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(paths.root))
    return main(list(args))


def stream_text(directory: Path, tokenizer) -> str:
    tokens = np.concatenate([open_shard(p) for p in sorted(directory.glob("*.bin"))])
    return tokenizer.decode(tokens.tolist(), skip_special_tokens=False)


def test_outputs_split_documents_evenly_and_feed_the_training_channels(tmp_path):
    paths = processing_tree(tmp_path / "job")
    env = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(paths.root),
        "PYTHONPATH": str(REPO / "containers/jax-llm"),
    }
    # As the image runs it: ContainerArguments ["prepare", ...] after the ENTRYPOINT `python -m jax_llm`.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "jax_llm",
            "prepare",
            "--vocab-size",
            "700",
            "--validation-fraction",
            "0.2",
            "--shard-size-tokens",
            "20000",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    out = paths.processing / "output"
    tokenizer = load_tokenizer(out / "tokenizer" / "tokenizer.json")
    assert tokenizer.get_vocab_size() == 700
    # Every 5th document (indices 4, 9, ...) is validation; documents stay whole and in order.
    assert stream_text(out / "validation", tokenizer) == "".join(d + EOS_TOKEN for d in DOCUMENTS[4::5])
    assert stream_text(out / "train", tokenizer) == "".join(
        d + EOS_TOKEN for i, d in enumerate(DOCUMENTS) if i % 5 != 4
    )
    shards = sorted((out / "train").glob("*.bin"))
    assert len(shards) > 3 and all(read_header(p)["tokens"] == 20000 for p in shards[:-1])
    summary = json.loads(run.stdout.split("prepare: ", 1)[1])
    assert summary["documents"] == len(DOCUMENTS) and summary["train"]["shards"] == len(shards)

    # The outputs, as they are, are the training job's train / validation / tokenizer channels.
    training = SageMakerPaths(tmp_path / "training")
    for name in ("train", "validation", "tokenizer"):
        shutil.copytree(out / name, training.channel(name))
    data = load_training_data(training, vocab_size=32, seq_len=64, seed=0, work_dir=tmp_path / "work")
    assert data.vocab_size == 700
    assert data.train.num_tokens == summary["train"]["tokens"]
    assert data.validation.num_tokens == summary["validation"]["tokens"]
    assert data.train.batch(0, 4, 64).shape == (4, 65)


def test_config_local_paths_are_used_and_rebased_from_opt_ml(tmp_path, monkeypatch):
    # The job config says /opt/ml/...; run on the host with another root, the same tree is found under it.
    paths = processing_tree(
        tmp_path,
        inputs={"corpus": "/opt/ml/processing/input/corpus"},
        outputs={
            "tokenizer": "/opt/ml/processing/tok",
            "train": "/opt/ml/processing/tr",
            "validation": "/opt/ml/processing/va",
        },
        documents=DOCUMENTS[:3],
    )
    assert (
        run_prepare(
            paths,
            monkeypatch,
            "--input-name",
            "corpus",
            "--vocab-size",
            "300",
            "--validation-fraction",
            "0.5",
        )
        == 0
    )
    assert (tmp_path / "processing/tok/tokenizer.json").is_file()
    assert [p.name for p in (tmp_path / "processing/tr").iterdir()] == ["train-00000.bin"]
    assert [p.name for p in (tmp_path / "processing/va").iterdir()] == ["validation-00000.bin"]


def test_several_instances_share_a_given_tokenizer_and_name_shards_by_host(tmp_path, monkeypatch):
    given = tmp_path / "given"
    assert (
        run_prepare(
            processing_tree(given, documents=DOCUMENTS[:4]),
            monkeypatch,
            "--vocab-size",
            "300",
            "--validation-fraction",
            "0",
        )
        == 0
    )
    tokenizer_dir = str(tmp_path / "job/processing/input/tokenizer")
    paths = processing_tree(
        tmp_path / "job",
        hosts=2,
        inputs={"raw": str(tmp_path / "job/processing/input/raw"), "tokenizer": tokenizer_dir},
    )
    shutil.copytree(given / "processing/output/tokenizer", tokenizer_dir)
    assert run_prepare(paths, monkeypatch, "--validation-fraction", "0.1") == 0
    out = paths.processing / "output"
    assert (out / "tokenizer/tokenizer.json").read_bytes() == (
        Path(tokenizer_dir) / "tokenizer.json"
    ).read_bytes()
    assert [p.name for p in sorted((out / "train").iterdir())] == ["train-algo-1-00000.bin"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vocab-size", "lots"], "argument --vocab-size: invalid int value: 'lots'"),
        (["--vocab-size", "100"], "--vocab-size: must be at least 257"),
        (["--validation-fraction", "1.5"], "--validation-fraction: must be in \\[0, 1\\)"),
        (["--shard-size-tokens", "0"], "--shard-size-tokens: must be a positive integer"),
        (["--vocab_size", "300"], "unrecognized arguments: --vocab_size"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason_in_the_exit_message(tmp_path, monkeypatch, args, message):
    paths = processing_tree(tmp_path)
    assert run_prepare(paths, monkeypatch, *args) == 2
    assert re.search(message, paths.message.read_text()[:1024])
    assert not any((paths.processing / "output").glob("*/*"))


def _latin1(paths):
    (paths.processing / "input/raw/zz.txt").write_bytes(b"caf\xe9")


@pytest.mark.parametrize(
    "breaks, message",
    [
        (
            lambda paths: shutil.rmtree(paths.processing / "input/raw"),
            r"input 'raw' \(.*processing/input/raw\): missing",
        ),
        (
            lambda paths: [p.unlink() for p in (paths.processing / "input/raw").iterdir()],
            r"input 'raw' .*: .*\(empty\)",
        ),
        (_latin1, r"CorpusError: .*zz\.txt: not UTF-8"),
        (
            lambda paths: (
                (paths.processing / "output/train").mkdir(parents=True)
                or (paths.processing / "output/train/old.bin").write_text("x")
            ),
            r"output 'train' .*: not empty",
        ),
        (
            lambda paths: paths.processing_resource_config.write_text(
                '{"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}'
            ),
            "2 instances would each train a different tokenizer",
        ),
    ],
)
def test_unusable_input_exits_1_with_the_reason_first_in_the_exit_message(
    tmp_path, monkeypatch, breaks, message
):
    paths = processing_tree(tmp_path, documents=DOCUMENTS[:5])
    breaks(paths)
    assert run_prepare(paths, monkeypatch, "--vocab-size", "300") == 1
    assert re.search(message, paths.message.read_text().splitlines()[0])


def test_too_few_documents_for_the_validation_fraction_is_an_error(tmp_path, monkeypatch):
    paths = processing_tree(tmp_path, documents=DOCUMENTS[:5])
    assert run_prepare(paths, monkeypatch, "--vocab-size", "300", "--validation-fraction", "0.1") == 1
    assert "holds out every 10th document, but there are only 5" in paths.message.read_text()
