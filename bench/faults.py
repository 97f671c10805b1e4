"""Faults, as an outside tester would send them: a load burst, malformed requests, damaged checkpoints.

    PYTHONPATH=.:containers/jax-llm .venv/bin/python bench/faults.py [--requests 300] [--out faults.json]

Serving (the real `python -m jax_llm serve` on 127.0.0.1, a random tiny model, 32 slots + 256 queue):
  1. a burst of `--requests` valid requests all at once (half streamed), with /ping polled throughout:
     answers by status, requests lost (no answer, or a stream without its final event), worst /ping;
  2. each malformed-request case below, one after the other, with /ping polled while it is handled and
     after it: its status, whether that is the expected refusal with the server still healthy, and the
     slowest /ping meanwhile (the hostile-input classes: values past the engine's ranges, numbers past a
     float, lone surrogates, misplaced TGI keys, 5.8 MB prompts, a 150k-message chat, abandoned requests).
Training (`python -m jax_llm train`, tiny preset, checkpoints at steps 8, 16 and 24): each damage a
spot interruption mid-upload can leave, applied to a copy of the run's checkpoints, then the job run
again: whether it recovered (exit 0, losses identical to the undamaged run's) or, when nothing is
readable, failed with a message naming the checkpoint directory.

Not a test: it runs for minutes. Prints a table; --out writes the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.serve_load import build_model, corpus_texts, machine, make_requests, start_server
from jax_llm.contract.paths import BASE_DIR_VARIABLE, IMAGE_SOURCE
from local_mode.tree import lay_out_training_tree

JSON = {"Content-Type": "application/json"}
QUEUE = 256


# (name, how it is sent, statuses that are the right refusal)
def malformed_cases(url: str, port: int) -> list[tuple[str, callable, set[int]]]:
    def post(body: bytes, headers=JSON, **kwargs):
        return lambda: httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=60, **kwargs)

    def raw(data: bytes, close_after: bool = False):
        def send() -> int | None:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
                connection.sendall(data)
                if close_after:
                    return None  # the client leaves: there is no answer to read
                head = connection.recv(65536)
            return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else -1

        return send

    def v1(route: str, body: bytes):
        return lambda: httpx.post(f"{url}/v1/{route}", content=body, headers=JSON, timeout=60)

    def _request(body: bytes) -> bytes:
        head = (
            "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}"
        )
        return head.encode() + b"\r\n\r\n" + body

    partial = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    return [
        ("invalid JSON", post(b'{"inputs": "x'), {400}),
        ("not UTF-8", post(b'{"inputs": "\xff\xfe"}'), {400}),
        ("empty body", post(b""), {400}),
        ("JSON nested 100000 deep", post(b"[" * 100_000 + b"]" * 100_000), {400}),
        ("a JSON list, not an object", post(b"[1, 2]"), {422}),
        (
            "form-encoded body",
            post(b"inputs=x", {"Content-Type": "application/x-www-form-urlencoded"}),
            {415},
        ),
        ("inputs missing", post(b'{"parameters": {}}'), {422}),
        ("inputs a number", post(b'{"inputs": 3}'), {422}),
        ("unknown parameter", post(b'{"inputs": "a", "parameters": {"frequency_penalty": 1}}'), {422}),
        ("temperature NaN", post(b'{"inputs": "a", "parameters": {"temperature": NaN}}'), {400, 422}),
        ("temperature -1", post(b'{"inputs": "a", "parameters": {"temperature": -1}}'), {422}),
        (
            "temperature 1e-39 (answered greedily)",
            post(b'{"inputs": "a", "parameters": {"temperature": 1e-39, "max_new_tokens": 4}}'),
            {200},
        ),
        (
            "max_new_tokens 10^9",
            post(b'{"inputs": "a", "parameters": {"max_new_tokens": 1000000000}}'),
            {422},
        ),
        ("seed 2^70", post(b'{"inputs": "a", "parameters": {"seed": 1180591620717411303424}}'), {422}),
        (
            "stop with 100 sequences",
            post(json.dumps({"inputs": "a", "parameters": {"stop": [str(i) for i in range(100)]}}).encode()),
            {422},
        ),
        ("stream of a list", post(b'{"inputs": ["a", "b"], "stream": true}'), {422}),
        (
            "289 inputs (more than slots + queue)",
            post(json.dumps({"inputs": ["a"] * (32 + QUEUE + 1)}).encode()),
            {422},
        ),
        ("body over 6 MB", post(json.dumps({"inputs": "x" * (6 << 20)}).encode()), {413}),
        (
            "custom attributes of 1 MB",
            post(
                b'{"inputs": "a", "parameters": {"max_new_tokens": 1}}',
                {**JSON, "X-Amzn-SageMaker-Custom-Attributes": "k" * (1 << 20)},
            ),
            {400, 431},
        ),
        ("half a body held open", raw(partial + b'{"inputs": '), {408}),
        ("half a body, then gone", raw(partial + b'{"inputs": ', close_after=True), {None}),
        ("GET /invocations", lambda: httpx.get(f"{url}/invocations", timeout=10), {405}),
        ("unknown path", lambda: httpx.post(f"{url}/predict", content=b"{}", timeout=10), {404}),
        # Hostile input (issue 25): values past what the engine's arrays hold, numbers past a float,
        # text that is not Unicode, misplaced keys, bodies that take long to tokenize or render.
        ("top_k 2^31 (TGI)", post(b'{"inputs": "hello", "parameters": {"top_k": 2147483648}}'), {422}),
        (
            "top_k 2^31 (/v1/completions)",
            v1("completions", b'{"prompt": "hello", "top_k": 2147483648}'),
            {422},
        ),
        (
            "temperature 1e39 (past float32)",
            post(b'{"inputs": "a", "parameters": {"temperature": 1e39}}'),
            {422},
        ),
        (
            "temperature of 400 digits (past a float)",
            v1("completions", b'{"prompt": "a", "temperature": 1' + b"0" * 400 + b"}"),
            {422},
        ),
        (
            "seed of 5000 digits",
            post(b'{"inputs": "a", "parameters": {"seed": 1' + b"0" * 5000 + b"}}"),
            {400},
        ),
        ("inputs with a lone surrogate", post(b'{"inputs": "\\ud800"}'), {400}),
        (
            "chat with a lone surrogate",
            v1("chat/completions", b'{"messages": [{"role": "user", "content": "\\udfff"}]}'),
            {400},
        ),
        ("max_new_tokens beside parameters", post(b'{"inputs": "hi", "max_new_tokens": 2}'), {422}),
        (
            "top_k a 200 kB string",
            post(json.dumps({"inputs": "a", "parameters": {"top_k": "x" * 200_000}}).encode()),
            {422},
        ),
        ("5.8 MB prompt", post(json.dumps({"inputs": "x = 1 + 2 " * 580_000}).encode()), {422}),
        (
            "5.8 MB prompt, truncate 8",
            post(
                json.dumps(
                    {"inputs": "x = 1 + 2 " * 580_000, "parameters": {"truncate": 8, "max_new_tokens": 2}}
                ).encode()
            ),
            {200},
        ),
        (
            "chat of 150k messages",
            v1(
                "chat/completions",
                json.dumps({"messages": [{"role": "user", "content": "hi"}] * 150_000}).encode(),
            ),
            {422},
        ),
        (
            "non-streamed request, client gone",
            raw(_request(b'{"inputs": "a", "parameters": {"max_new_tokens": 48}}'), close_after=True),
            {None},
        ),
        ("GET /v1/models/jax-llm", lambda: httpx.get(f"{url}/v1/models/jax-llm", timeout=10), {200}),
        ("GET /v1/models/other", lambda: httpx.get(f"{url}/v1/models/other", timeout=10), {404}),
    ]


class PingWatch(threading.Thread):
    """Polls /ping every 50 ms from a thread of its own (the burst's event loop would delay it)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.worst_s, self.count, self.failed = url, 0.0, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.done.is_set():
                started = time.perf_counter()
                try:
                    self.failed += client.get(f"{self.url}/ping").status_code != 200
                except httpx.HTTPError:
                    self.failed += 1
                self.worst_s, self.count = max(self.worst_s, time.perf_counter() - started), self.count + 1
                time.sleep(0.05)


async def burst(url: str, requests: list[dict]) -> dict:
    """Every request at once, /ping polled every 50 ms meanwhile; statuses, lost answers, worst /ping."""
    statuses: Counter = Counter()
    lost = 0
    limits = httpx.Limits(max_connections=len(requests) + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(payload: dict) -> None:
            nonlocal lost
            try:
                async with client.stream("POST", "/invocations", json=payload) as response:
                    body = await response.aread()
                statuses[response.status_code] += 1
                if (
                    response.status_code == 200
                    and payload["stream"]
                    and b'"generated_text":"' not in body
                    and b'"generated_text": "' not in body
                ):
                    lost += 1  # a stream that ended without its final event
            except httpx.HTTPError:
                lost += 1

        watch = PingWatch(url)
        watch.start()
        started = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests))
        seconds = time.perf_counter() - started
        watch.done.set()
        watch.join()
    return {
        "sent": len(requests),
        "by_status": dict(sorted(statuses.items())),
        "lost": lost,
        "seconds": seconds,
        "pings": watch.count,
        "pings_not_200": watch.failed,
        "worst_ping_s": watch.worst_s,
    }


def serving(requests_count: int, work: Path) -> dict:
    model = build_model(work / "serve", "tiny")
    server = start_server(
        model.parent,
        32,
        work / "cache",
        work / "serve.log",
        None,
        JAX_LLM_MAX_QUEUE=str(QUEUE),
        JAX_LLM_BODY_TIMEOUT_S="5",
    )
    try:
        requests = make_requests(model, requests_count, 24)
        for i, request in enumerate(requests):
            request["stream"] = bool(i % 2)
        load = asyncio.run(burst(server.url, requests))
        cases = []
        for name, send, expected in malformed_cases(server.url, int(server.url.rsplit(":", 1)[1])):
            watch = PingWatch(server.url)  # /ping while the case is handled
            watch.start()
            try:
                answer = send()
                status = answer if answer is None or isinstance(answer, int) else answer.status_code
            except httpx.HTTPError as error:
                status = f"no answer ({type(error).__name__})"
            watch.done.set()
            watch.join()
            healthy = httpx.get(f"{server.url}/ping", timeout=5).status_code == 200 and not watch.failed
            cases.append(
                {
                    "case": name,
                    "status": status,
                    "expected": sorted(map(str, expected)),
                    "ok": status in expected and healthy,
                    "worst_ping_ms": round(watch.worst_s * 1000, 1),
                }
            )
        return {"load": load, "malformed": cases}
    finally:
        server.stop()


HYPERPARAMETERS = {
    "preset": "tiny",
    "max_steps": 24,
    "batch_size": 8,
    "seq_len": 64,
    "vocab_size": 512,
    "log_every": 4,
    "eval_every": 0,
    "eval_batches": 1,
    "checkpoint_every": 8,
    "keep_checkpoints": 3,
    "seed": 3,
}


def _train(root: Path) -> tuple[int, str]:
    env = {
        BASE_DIR_VARIABLE: str(root),
        "PYTHONPATH": str(IMAGE_SOURCE),
        "JAX_PLATFORMS": "cpu",
        "PATH": "/usr/bin:/bin",
    }
    run = subprocess.run(
        [sys.executable, "-m", "jax_llm", "train"], env=env, capture_output=True, text=True, timeout=600
    )
    return run.returncode, run.stdout + run.stderr


def _files(step: Path, pick) -> list[Path]:
    return [p for p in step.rglob("*") if p.is_file() and pick(p)]


def _cut(paths: list[Path], keep: float) -> None:
    for path in paths:
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def _part(step: Path, suffix: str) -> Path:
    """The step's (one host's) part file: `.bin` (the blocks) or `.json` (its commit)."""
    (path,) = step.glob(f"part-*{suffix}")
    return path


DAMAGE = {
    "newest step emptied": lambda s: [
        shutil.rmtree(c) if c.is_dir() else c.unlink() for c in s[-1].iterdir()
    ],
    "newest step's data cut in half": lambda s: _cut([_part(s[-1], ".bin")], 0.5),
    "newest step's commit garbled": lambda s: _part(s[-1], ".json").write_text('{"form'),
    "newest step's commit gone (save never finished)": lambda s: _part(s[-1], ".json").unlink(),
    "newest step's data gone": lambda s: _part(s[-1], ".bin").unlink(),
    "two newest steps damaged": lambda s: [_part(d, ".json").write_text("x") for d in s[-2:]],
    "every step damaged (must fail, naming the directory)": lambda s: [
        _part(d, ".json").write_text("x") for d in s
    ],
}


def training(work: Path) -> list[dict]:
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "train.txt").write_text("\n".join(corpus_texts()))
    reference = lay_out_training_tree(
        work / "reference", hyperparameters=HYPERPARAMETERS, channels={"train": corpus}
    )
    code, log = _train(reference.root)
    if code != 0:
        raise RuntimeError(f"the reference run failed:\n{log[-2000:]}")
    curves = json.loads((reference.output_data / "loss_curves.json").read_text())
    outcomes = []
    for name, damage in DAMAGE.items():
        tree = lay_out_training_tree(
            work / name.replace(" ", "-").replace("'", ""),
            hyperparameters=HYPERPARAMETERS,
            channels={"train": corpus},
            checkpoints=reference.checkpoints,
        )
        steps = sorted((tree.checkpoints / "steps").iterdir(), key=lambda p: int(p.name))
        damage(steps)
        code, log = _train(tree.root)
        if code == 0:
            restored = [line for line in log.splitlines() if line.startswith("restored checkpoint")]
            same = json.loads((tree.output_data / "loss_curves.json").read_text()) == curves
            outcome = f"recovered from {restored[0].split()[2] if restored else 'scratch'}" + (
                ", losses identical" if same else ", LOSSES DIFFER"
            )
            ok = same and bool(restored)
        else:
            failure = tree.failure.read_text() if tree.failure.is_file() else ""
            outcome = failure.splitlines()[0][:160] if failure else f"exit {code}, no failure file"
            ok = "every step" in name and str(tree.checkpoints / "steps") in failure
        kept = (
            len(list((tree.checkpoints / "damaged").iterdir()))
            if (tree.checkpoints / "damaged").is_dir()
            else 0
        )
        outcomes.append({"damage": name, "exit": code, "outcome": outcome, "kept_aside": kept, "ok": ok})
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--serving-only", action="store_true", help="leave out the checkpoint cases")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    started, where = time.perf_counter(), machine()
    report = {"machine": where, **serving(args.requests, work)}
    report["checkpoints"] = [] if args.serving_only else training(work / "train")
    report["seconds"] = time.perf_counter() - started
    load = report["load"]
    print(f"machine: {where}")
    print(
        f"load burst: {load['sent']} requests at once -> {load['by_status']} in {load['seconds']:.1f} s, "
        f"lost {load['lost']}; /ping: {load['pings']} polls, {load['pings_not_200']} not 200, "
        f"worst {load['worst_ping_s'] * 1000:.0f} ms"
    )
    print(
        f"malformed requests: {sum(c['ok'] for c in report['malformed'])}/{len(report['malformed'])} "
        "refused as expected with /ping 200 after"
    )
    for case in report["malformed"]:
        print(
            f"  {'ok ' if case['ok'] else 'BAD'} {case['case']:45s} {str(case['status']):5s} "
            f"worst /ping meanwhile {case['worst_ping_ms']:.0f} ms"
        )
    print(
        f"damaged checkpoints: {sum(c['ok'] for c in report['checkpoints'])}/{len(report['checkpoints'])} "
        "handled as expected"
    )
    for case in report["checkpoints"]:
        print(
            f"  {'ok ' if case['ok'] else 'BAD'} {case['damage']:52s} {case['outcome']} "
            f"(kept aside: {case['kept_aside']})"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if all(c["ok"] for c in report["malformed"] + report["checkpoints"]) and not load["lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
