"""Benchmark `ossgate serve`: concurrent streaming clients through HTTP vs. the same engine called directly.

For each concurrency (default 1, 8, 32 clients, each sending `--requests` requests back to back) it
measures output throughput, time to first token (p50/p99) and inter-token latency (p50), first on an
in-process AsyncEngine (the baseline: no HTTP, no JSON), then through a real `ossgate serve` process
with streaming clients. The difference is the server's overhead: per request (p50 latency, c=1) and in
throughput (at the highest concurrency). Targets: < 2 ms p50 per request, < 5 % throughput loss at 32.

    python bench/serve.py                                  # the nano model (default), chat completions
    python bench/serve.py --model /tmp/tiny --api completions --max-tokens 32
                                                           # random weights: raw completions stream every token
    python bench/serve.py --engine thread                  # the server's engine loop in a thread, not a process

Results go to bench/results/serve.md (and serve.png when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What is 47 + 38?", "What's the weather in Paris?", "Say hello in French.", "What is 125 - 67?",
    "Translate 'thank you' to German.", "What is 12 * 9?", "Define ephemeral.", "Is it cold in Oslo today?",
]  # fmt: skip
console = Console()


@dataclass
class Sample:
    start: float
    token_times: list[float] = field(default_factory=list)  # direct: every token; server: every streamed chunk
    tokens: int = 0
    first_text: float | None = None  # when the first text (reasoning, answer or call) appeared


@dataclass
class Run:
    mode: str
    clients: int
    wall_s: float
    samples: list[Sample]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)

    def ttft_ms(self) -> list[float]:
        return sorted(((s.first_text or s.token_times[0]) - s.start) * 1000 for s in self.samples if s.token_times)

    def itl_ms(self) -> list[float]:
        gaps = [(b - a) * 1000 for s in self.samples for a, b in zip(s.token_times, s.token_times[1:], strict=False)]
        return sorted(gaps)

    def latency_ms(self) -> list[float]:
        return sorted((s.token_times[-1] - s.start) * 1000 for s in self.samples if s.token_times)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def prompts(api: str) -> list:
    from ossgate import harmony

    if api == "chat":
        return [harmony.render_prompt([harmony.ChatMessage("user", q)]) for q in QUESTIONS]
    return [harmony.text_tokens(q) for q in QUESTIONS]


def _text_started(parser, token: int) -> bool:
    from ossgate import harmony

    try:
        return parser.feed(token) is not None
    except harmony.MalformedHarmony:
        return True  # the server returns broken harmony as text from here on


async def direct(model, api: str, clients: int, requests: int, max_tokens: int, progress, task) -> Run:
    """The baseline: AsyncEngine in this process, same prompts, sampling and stop tokens as the server."""
    from ossgate import harmony
    from ossgate.engine.async_engine import AsyncEngine
    from ossgate.engine.core import EngineConfig, EngineCore
    from ossgate.engine.sampling import SamplingParams

    engine = AsyncEngine(EngineCore(model, EngineConfig(max_running=32)))
    engine.start()
    stops = harmony.stop_token_ids() if api == "chat" else [harmony.special_token_id("<|endoftext|>")]
    ids = prompts(api)

    async def one(i: int) -> Sample:
        params = SamplingParams(max_tokens=max_tokens, temperature=0, stop_token_ids=stops)
        # chat: TTFT counts to the first text, as a streaming client sees it (harmony headers come first)
        parser = harmony.StreamParser() if api == "chat" else None
        s = Sample(time.perf_counter())
        stream = await engine.generate(ids[i % len(ids)], params)
        async for ev in stream:
            if ev.token >= 0:
                now = time.perf_counter()
                s.token_times.append(now)
                s.tokens += 1
                if s.first_text is None and (parser is None or _text_started(parser, ev.token)):
                    s.first_text = now
        return s

    async def client(c: int) -> list[Sample]:
        out = []
        for r in range(requests):
            out.append(await one(c * requests + r))
            progress.advance(task)
        return out

    await one(0)  # warm-up (kernels, prefix cache)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    engine.shutdown()
    return Run("direct", clients, wall, [s for r in results for s in r])


async def served(base: str, api: str, clients: int, requests: int, max_tokens: int, progress, task) -> Run:
    """Streaming HTTP clients against a running `ossgate serve` (one connection pool per client)."""

    async def one(http: httpx.AsyncClient, i: int) -> Sample:
        if api == "chat":
            path = "/v1/chat/completions"
            body = {"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]}
        else:
            path, body = "/v1/completions", {"prompt": QUESTIONS[i % len(QUESTIONS)]}
        body |= {"max_tokens": max_tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        s = Sample(time.perf_counter())
        async with http.stream("POST", path, json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                now = time.perf_counter()
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    s.tokens = chunk["usage"]["completion_tokens"]
                for c in chunk.get("choices") or []:
                    delta = c.get("delta") or {}
                    if c.get("text") or delta.get("content") or delta.get("reasoning") or delta.get("tool_calls"):
                        s.token_times.append(now)
        return s

    async def client(c: int) -> list[Sample]:
        out = []
        async with httpx.AsyncClient(base_url=base, timeout=600) as http:
            for r in range(requests):
                out.append(await one(http, c * requests + r))
                progress.advance(task)
        return out

    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        await one(http, 0)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(client(c) for c in range(clients)))
    return Run("server", clients, time.perf_counter() - t0, [s for r in results for s in r])


def start_server(model_dir: Path | None, port: int, home: Path, engine: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ossgate.server.cli", "serve", "--port", str(port), "--log-level", "warning"]
    if model_dir is not None:
        cmd += ["--model", str(model_dir), "--name", "bench", "--engine", engine]
    # the default configuration, tracing included: its cost is part of the server's overhead
    env = {**os.environ, "OSSGATE_HOME": str(home), "OSSGATE_DATABASE_URL": f"sqlite:///{home / 'bench-server.db'}"}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start")


def report(runs: list[Run], args, device: str) -> str:
    rows = [
        "| mode | clients | requests | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | latency p50 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        rows.append(
            f"| {r.mode} | {r.clients} | {len(r.samples)} | {r.tokens / r.wall_s:.1f} | {pct(r.ttft_ms(), 0.5):.1f} "
            f"| {pct(r.ttft_ms(), 0.99):.1f} | {pct(r.itl_ms(), 0.5):.2f} | {pct(r.latency_ms(), 0.5):.1f} |"
        )
    by = {(r.mode, r.clients): r for r in runs}
    lines = []
    c1 = min(args.clients)
    if ("direct", c1) in by and ("server", c1) in by:
        d, s = by[("direct", c1)], by[("server", c1)]
        ttft = pct(s.ttft_ms(), 0.5) - pct(d.ttft_ms(), 0.5)
        whole = pct(s.latency_ms(), 0.5) - pct(d.latency_ms(), 0.5)
        lines.append(
            f"- per-request overhead at {c1} client(s), p50: TTFT {ttft:+.2f} ms, "
            f"whole request {whole:+.2f} ms (target < 2 ms)"
        )
    cmax = max(args.clients)
    if ("direct", cmax) in by and ("server", cmax) in by:
        d, s = by[("direct", cmax)], by[("server", cmax)]
        loss = 1 - (s.tokens / s.wall_s) / (d.tokens / d.wall_s)
        lines.append(f"- throughput loss at {cmax} clients: {loss * 100:.1f} % (target < 5 %)")
    cmd = "python bench/serve.py " + " ".join(sys.argv[1:])
    return (
        f"# ossgate serve benchmark\n\n{device}; model {args.model or 'gpt-oss-nano'}; api {args.api}; "
        f"server engine: {args.engine}; "
        f"max_tokens {args.max_tokens}; {args.requests} requests per client; greedy.\n\n"
        f"Command: `{cmd}`\n\n" + "\n".join(rows) + "\n\n" + "\n".join(lines) + "\n"
    )


def plot(runs: list[Run], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for mode in ("direct", "server"):
        rs = [r for r in runs if r.mode == mode]
        a.plot([r.clients for r in rs], [r.tokens / r.wall_s for r in rs], marker="o", label=mode)
        b.plot([r.clients for r in rs], [pct(r.ttft_ms(), 0.5) for r in rs], marker="o", label=mode)
    a.set(xlabel="concurrent clients", ylabel="output tokens/s", xscale="log", title="throughput")
    b.set(xlabel="concurrent clients", ylabel="ms", xscale="log", title="TTFT p50")
    a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint directory (default: the nano model)")
    p.add_argument("--api", choices=["chat", "completions"], default="chat")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--port", type=int, default=18431)
    p.add_argument(
        "--engine", choices=["process", "thread"], default="process", help="where the server runs its engine loop"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.md")
    args = p.parse_args()

    import torch

    from ossgate.model.checkpoint import load_model
    from ossgate.vocab import data_dir

    model_dir = args.model
    if model_dir is None:
        from ossgate.nano import model_path

        model_dir = Path(model_path())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    device_name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    runs: list[Run] = []
    total = sum(args.clients) * args.requests
    with Progress(console=console) as progress:
        model = load_model(model_dir, device=device, show_progress=False)
        task = progress.add_task("direct engine", total=total)
        for c in args.clients:
            runs.append(asyncio.run(direct(model, args.api, c, args.requests, args.max_tokens, progress, task)))
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        server = start_server(model_dir, args.port, data_dir(), args.engine)
        try:
            task = progress.add_task("through ossgate serve", total=total)
            base = f"http://127.0.0.1:{args.port}"
            for c in args.clients:
                runs.append(asyncio.run(served(base, args.api, c, args.requests, args.max_tokens, progress, task)))
        finally:
            server.terminate()
            server.wait(60)
    runs.sort(key=lambda r: (r.clients, r.mode))
    text = report(runs, args, device_name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    plot(runs, args.out.with_suffix(".png"))
    console.print(text)


if __name__ == "__main__":
    main()
