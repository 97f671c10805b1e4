"""Load benchmark for `python -m jax_llm serve`: continuous batching against one-request-at-a-time, in one run.

Both servers are the real thing (`python -m jax_llm serve` subprocesses on 127.0.0.1) serving the same
exported model; the baseline runs with one slot (JAX_LLM_MAX_BATCH=1), so it serves requests one at a
time, each at full speed. Every request streams (TGI server-sent events), so time to first token is
measured at the client. The same request list (mixed prompt lengths, greedy and seeded sampling) is
sent at concurrency 1, 8 and 32. Also measured: time from process start to the listening socket and
to the first /ping 200, with an empty and then a filled JAX compilation cache. Last, the same requests
go straight into the server's engine in this process (1 slot at concurrency 32; all slots at 1 and 32),
without sockets, HTTP or SSE: the ceiling the HTTP server can approach on this machine. For every HTTP level,
the server's own view
(its /metrics histograms of time to first token and time per output token, scraped before and after the
level) is printed beside the client's, so the two can be compared: the difference is the HTTP layer,
the event loop and the client's own share of the CPU.

    PYTHONPATH=.:containers/jax-llm .venv/bin/python bench/serve_load.py [--preset tiny] [--requests 128]
        [--max-new-tokens 32] [--max-context N]

--max-context serves a bigger preset at a shorter context (JAX_LLM_MAX_CONTEXT, both servers alike), so
that its prompts, cut to fit, keep the run to minutes on a CPU.

The model is randomly initialised (speed does not depend on the weights) with a byte-level BPE
trained on Python stdlib sources; --model-dir serves an exported model instead.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import httpx

from jax_llm.contract.paths import SageMakerPaths
from jax_llm.contract.serving import DECODE_SLOTS_VARIABLE, PORT_VARIABLE
from local_mode.runner import free_port, host_environment

CORPUS = ("argparse.py", "textwrap.py", "difflib.py", "json/decoder.py")


def build_model(root: Path, preset: str) -> Path:
    """Exports a randomly initialised `preset` GPT with a BPE tokenizer into `root/model`."""
    from flax import nnx

    from jax_llm.data.tokenizer import save_tokenizer, train_tokenizer
    from jax_llm.model.config import ModelConfig
    from jax_llm.model.export import save_model
    from jax_llm.model.gpt import GPT

    config = ModelConfig.preset(preset)
    tokenizer = train_tokenizer(corpus_texts(), config.vocab_size)
    tokenizer_file = save_tokenizer(tokenizer, root / "tokenizer" / "tokenizer.json")
    save_model(root / "model", GPT(config, rngs=nnx.Rngs(0)), tokenizer_file)
    return root / "model"


def corpus_texts() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / name).read_text(encoding="utf-8") for name in CORPUS]


def make_requests(
    model_dir: Path, count: int, max_new_tokens: int, max_context: int | None = None, seed: int = 0
) -> list[dict]:
    """`count` TGI requests: prompts of 4 to (context - max_new_tokens - 8) tokens cut from the corpus."""
    from jax_llm.data.tokenizer import load_tokenizer
    from jax_llm.model.export import read_model_config

    context = min(read_model_config(model_dir).max_seq_len, max_context or 1 << 30)
    tokenizer = load_tokenizer(model_dir / "tokenizer.json")
    ids = tokenizer.encode("\n".join(corpus_texts())).ids
    rng = random.Random(seed)
    requests = []
    for i in range(count):
        length = rng.randint(4, context - max_new_tokens - 8)  # re-encoding may merge differently: keep slack
        start = rng.randrange(len(ids) - length)
        params = {"max_new_tokens": max_new_tokens, "details": True}
        if i % 2:
            params |= {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "seed": i}
        requests.append(
            {"inputs": tokenizer.decode(ids[start : start + length]), "parameters": params, "stream": True}
        )
    return requests


@dataclasses.dataclass
class Server:
    process: subprocess.Popen
    url: str
    listen_s: float  # process start -> first answered /ping (503 or 200)
    ready_s: float  # process start -> first /ping 200

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def server_env(root: Path, slots: int, cache_dir: Path, max_context: int | None) -> dict[str, str]:
    """The serving environment: this one's (JAX_LLM_COMPUTE_DTYPE and the like pass through) plus the bench's."""
    return host_environment(
        SageMakerPaths(root),
        {
            DECODE_SLOTS_VARIABLE: str(slots),
            "JAX_LLM_MAX_QUEUE": "1024",
            "JAX_LLM_COMPILE_CACHE_DIR": str(cache_dir),
            "JAX_LLM_MAX_CONTEXT": str(max_context or ""),
        },
    )


def start_server(
    root: Path, slots: int, cache_dir: Path, log: Path, max_context: int | None, **settings: str
) -> Server:
    """Starts `python -m jax_llm serve` (`settings`: more JAX_LLM_* variables) and polls /ping every 10 ms
    until it answers 200."""
    port = free_port()
    env = {
        **server_env(root, slots, cache_dir, max_context),
        **settings,
        PORT_VARIABLE: str(port),
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "jax_llm", "serve"], env=env, stdout=log.open("a"), stderr=subprocess.STDOUT
    )
    url, listen_s = f"http://127.0.0.1:{port}", None
    with httpx.Client(timeout=2) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}; see {log}")
            try:
                status = client.get(f"{url}/ping").status_code
            except httpx.TransportError:
                time.sleep(0.01)
                continue
            listen_s = listen_s or time.perf_counter() - started
            if status == 200:
                return Server(process, url, listen_s, time.perf_counter() - started)
            time.sleep(0.01)


def start_engine(root: Path, slots: int, cache_dir: Path, max_context: int | None):
    """The server's own engine (same loader, same settings as the subprocesses), started in this process."""
    from jax_llm.serving.engine.loader import load_engine
    from jax_llm.serving.settings import ServingSettings

    return load_engine(ServingSettings.from_env(server_env(root, slots, cache_dir, max_context)))


@dataclasses.dataclass
class Result:
    latency_s: float
    ttft_s: float
    tokens: int

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first, as the client saw it."""
        return (self.latency_s - self.ttft_s) / (self.tokens - 1) if self.tokens > 1 else None


# The server's histograms (jax_llm.serving.api.metrics) that the client's view is compared with.
SERVER_HISTOGRAMS = {
    "ttft": "jax_llm_time_to_first_token_seconds",
    "tpot": "jax_llm_time_per_output_token_seconds",
}


def scrape(url: str) -> dict[tuple[str, str], float]:
    """The server's histogram samples: (sample name, upper bound or "") -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in text_string_to_metric_families(text)
        if family.name in SERVER_HISTOGRAMS.values()
        for s in family.samples
    }


def histogram_view(before: dict, after: dict, name: str) -> dict[str, float]:
    """Mean, p50 and p99 of one histogram over what happened between two scrapes. The quantiles are
    estimated as Prometheus' histogram_quantile does: linearly within the bucket that holds them."""
    count = after[(f"{name}_count", "")] - before.get((f"{name}_count", ""), 0.0)
    if not count:
        return {}
    total = after[(f"{name}_sum", "")] - before.get((f"{name}_sum", ""), 0.0)
    buckets = sorted(
        (float(le), after[key] - before.get(key, 0.0))
        for key in after
        if key[0] == f"{name}_bucket"
        for le in [key[1]]
    )

    def quantile(q: float) -> float:
        rank, lower, below = q * count, 0.0, 0.0
        for upper, cumulative in buckets:
            if cumulative >= rank:
                if upper == float("inf"):
                    return lower
                return lower + (upper - lower) * (rank - below) / max(cumulative - below, 1e-12)
            lower, below = upper, cumulative
        return lower

    return {"mean": total / count, "p50": quantile(0.5), "p99": quantile(0.99)}


async def one_request(port: int, payload: dict) -> Result:
    """Sends one request over a raw HTTP/1.1 connection; times the first token event and the whole answer.

    A hand-rolled client because the load generator shares the CPU with the server: parsing every
    event with a full HTTP client would cost more than serving it. `Connection: close` makes the end
    of the answer the end of the stream. A request that does not stream has its first token at the end.
    """
    body = json.dumps(payload).encode()
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /invocations HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    received, ttft = b"", None
    while chunk := await reader.read(1 << 16):
        received += chunk
        if ttft is None and b"data:" in received:
            ttft = time.perf_counter() - start
    latency = time.perf_counter() - start
    writer.close()
    if not received.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"request failed: {received[:300]!r}")
    if payload.get("stream"):
        last = received[received.rindex(b"data:") + 5 :]
        details = json.loads(last[: last.index(b"\n\n")])["details"]
    else:
        details = json.loads(received.split(b"\r\n\r\n", 1)[1])[0]["details"]
    return Result(latency, ttft or latency, details["generated_tokens"])


async def run_level(url: str, requests: list[dict], concurrency: int) -> dict:
    """Sends `requests` with at most `concurrency` in flight; returns throughput and latency figures."""
    port = int(url.rsplit(":", 1)[1])
    pending = list(reversed(requests))
    results: list[Result] = []

    async def worker() -> None:
        while pending:
            results.append(await one_request(port, pending.pop()))

    await one_request(port, requests[0])  # first request after start-up, not timed
    before = scrape(url)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    summary = summarize(results, time.perf_counter() - start, concurrency)
    after = scrape(url)
    summary["server"] = {key: histogram_view(before, after, name) for key, name in SERVER_HISTOGRAMS.items()}
    return summary


def engine_level(engine, requests: list[dict], concurrency: int) -> dict:
    """The same requests straight into an in-process Engine from `concurrency` client threads: no HTTP.

    Each client tokenizes its request as the HTTP handler does and takes every token through a
    streaming sink; what is left out is the socket, the HTTP parser and the SSE events, on both sides.
    """
    from jax_llm.serving.api.tgi_schema import parse_request

    def one(payload: dict) -> Result:
        done, first = threading.Event(), []

        def sink(token, final) -> None:
            if not first:
                first.append(time.perf_counter())
            if final is not None:
                first.append(final)
                done.set()

        start = time.perf_counter()
        prompts = engine.prepare(parse_request(json.dumps(payload).encode()))
        engine.submit(prompts, time.monotonic() + 60, [sink], stream=True)
        done.wait()
        return Result(time.perf_counter() - start, first[0] - start, len(first[-1].tokens))

    one(requests[0])  # not timed, as over HTTP
    pending, results = list(reversed(requests)), []

    def client() -> None:
        while True:
            try:
                payload = pending.pop()
            except IndexError:
                return
            results.append(one(payload))

    clients = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    return summarize(results, time.perf_counter() - start, concurrency)


def summarize(results: list[Result], elapsed: float, concurrency: int) -> dict:
    def pct(values: list[float], q: int) -> float:
        return (
            statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]
        )

    latency, ttft = [r.latency_s for r in results], [r.ttft_s for r in results]
    tpot = [r.tpot_s for r in results if r.tpot_s is not None]
    return {
        "tpot_mean_s": statistics.fmean(tpot) if tpot else float("nan"),
        "tpot_p50_s": pct(tpot, 50) if tpot else float("nan"),
        "concurrency": concurrency,
        "requests": len(results),
        "req_per_s": len(results) / elapsed,
        "tokens_per_s": sum(r.tokens for r in results) / elapsed,
        "p50_s": pct(latency, 50),
        "p99_s": pct(latency, 99),
        "ttft_p50_s": pct(ttft, 50),
        "ttft_p99_s": pct(ttft, 99),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset", default="tiny", help="model preset to initialise randomly (default: tiny)"
    )
    parser.add_argument("--model-dir", type=Path, help="serve this exported model instead")
    parser.add_argument(
        "--requests", type=int, default=128, help="requests at concurrency 8 and 32 (a quarter at 1)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--slots", type=int, default=32, help="decode slots of the batching server")
    parser.add_argument("--max-context", type=int, help="serve at most this context (default: the model's)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    root = work / "opt-ml"
    if args.model_dir:
        (root).mkdir(parents=True)
        (root / "model").symlink_to(args.model_dir.resolve())
    else:
        build_model(root, args.preset)
    requests = make_requests(root / "model", args.requests, args.max_new_tokens, args.max_context)
    log = work / "servers.log"
    print(
        f"machine: {machine()}\nmodel: {args.model_dir or 'random ' + args.preset}, context "
        f"{args.max_context or 'of the model'}; logs: {log}\n",
        flush=True,
    )

    rows = []
    few = requests[: max(8, len(requests) // 4)]  # concurrency 1 takes long per request: a quarter of them
    baseline = start_server(root, 1, work / "cache-baseline", log, args.max_context)
    rows.append(("one at a time (1 slot)", asyncio.run(run_level(baseline.url, few, 1))))
    rows.append(("one at a time (1 slot)", asyncio.run(run_level(baseline.url, requests, 32))))
    baseline.stop()

    cold = start_server(root, args.slots, work / "cache", log, args.max_context)
    for concurrency in (1, 8, 32):
        level_requests = few if concurrency == 1 else requests
        rows.append(
            (
                f"continuous batching ({args.slots} slots)",
                asyncio.run(run_level(cold.url, level_requests, concurrency)),
            )
        )
        print(f"  done concurrency {concurrency}", flush=True)
    unstreamed = [{**r, "stream": False} for r in requests]
    rows.append(
        (
            f"continuous batching ({args.slots} slots), not streamed",
            asyncio.run(run_level(cold.url, unstreamed, 32)),
        )
    )
    cold.stop()
    warm = start_server(
        root, args.slots, work / "cache", log, args.max_context
    )  # same compilation cache, now filled
    warm.stop()

    # The engine alone, in this process, on the same requests: what the HTTP layer can approach at best.
    engine_rows = []
    for slots, levels in ((1, (32,)), (args.slots, (1, 32))):
        engine = start_engine(root, slots, work / "cache", args.max_context)
        for concurrency in levels:
            level_requests = few if concurrency == 1 else requests
            name = f"engine alone, in-process ({slots} slot{'s' * (slots > 1)})"
            engine_rows.append((name, engine_level(engine, level_requests, concurrency)))
        engine.stop()
    rows += engine_rows

    print("TTFT of a request that is not streamed is its latency.\n")
    print(
        "| server | concurrency | requests | req/s | generated tok/s | p50 latency | p99 latency "
        "| p50 TTFT | p99 TTFT |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['concurrency']} | {r['requests']} | {r['req_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
            f"{r['p50_s'] * 1000:.0f} ms | {r['p99_s'] * 1000:.0f} ms | {r['ttft_p50_s'] * 1000:.0f} ms | "
            f"{r['ttft_p99_s'] * 1000:.0f} ms |"
        )
    sequential, saturated, single, c32 = rows[0][1], rows[1][1], rows[2][1], rows[4][1]
    print(
        f"\ntokens/s at concurrency 32 vs one at a time: {c32['tokens_per_s'] / saturated['tokens_per_s']:.1f}x "
        f"against the 1-slot server kept busy by 32 clients, {c32['tokens_per_s'] / sequential['tokens_per_s']:.1f}x "
        f"against it fed one request after another (goal >= 8x)"
    )
    print(
        f"p99 latency at concurrency 32 vs a single request's p50: {c32['p99_s'] / single['p50_s']:.1f}x (goal < 3x)"
    )
    print(
        "\nThe client's view and the server's own (its /metrics histograms; quantiles estimated within "
        "buckets), streamed levels:\n"
    )
    print(
        "| server | concurrency | TTFT p50 client / server | TTFT p99 client / server | "
        "TPOT mean client / server | TPOT p50 client / server |"
    )
    print("|---|---|---|---|---|---|")
    ms = lambda seconds: f"{seconds * 1000:.1f}"  # noqa: E731
    for name, r in rows:
        server = r.get("server")
        if not server or not server["ttft"] or "not streamed" in name:
            continue
        ttft, tpot = server["ttft"], server["tpot"] or {"mean": float("nan"), "p50": float("nan")}
        print(
            f"| {name} | {r['concurrency']} | {ms(r['ttft_p50_s'])} / {ms(ttft['p50'])} ms | "
            f"{ms(r['ttft_p99_s'])} / {ms(ttft['p99'])} ms | {ms(r['tpot_mean_s'])} / {ms(tpot['mean'])} ms | "
            f"{ms(r['tpot_p50_s'])} / {ms(tpot['p50'])} ms |"
        )
    alone_one, alone_single, alone_c32 = (r for _, r in engine_rows)
    print(
        f"the engine alone, without HTTP: {alone_c32['tokens_per_s'] / alone_one['tokens_per_s']:.1f}x tokens/s, "
        f"p99 at 32 {alone_c32['p99_s'] / alone_single['p50_s']:.1f}x a single request's p50"
    )
    print(
        f"start -> listening: {cold.listen_s:.2f} s; start -> /ping 200: {cold.ready_s:.1f} s with an empty "
        f"compilation cache, {warm.ready_s:.1f} s with it filled (listening {warm.listen_s:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
