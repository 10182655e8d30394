"""Benchmark observe/: tracing overhead on server throughput, trace-store write rate, query latency at 1M traces.

    python bench/observe.py                      # everything, SQLite + PostgreSQL (if OSSGATE_TEST_PG_URL is set)
    python bench/observe.py --part throughput --seconds 10 --rounds 3
    python bench/observe.py --part query --rows 1000000 --stores sqlite

Throughput: the test harness app (tests/observe/observe_harness.py: auth, guard, generation spans, 16 output
"tokens" echoed with no model) under real uvicorn, 32 concurrent keep-alive clients, tracing on
(SQLite store, capture=redacted) vs off, alternating rounds, median requests/s. With no model the
request does almost nothing else, so the measured loss is the worst case of tracing's cost per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ossgate.observe import Metrics, ObserveSettings, Tracer  # noqa: E402
from ossgate.observe.store import TraceFilter, TraceStore  # noqa: E402
from ossgate.observe.trace import latency_bucket  # noqa: E402

console = Console()
MESSAGES = [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "please summarise the meeting notes from tuesday for me"}]


# ---------------- throughput ----------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(enabled: bool, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "OSSGATE_HOME": str(tmp), "OSSGATE_OBSERVE_ENABLED": str(enabled).lower(),
           "OSSGATE_OBSERVE_STORE_URL": f"sqlite:///{tmp / 'bench-traces.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "observe_harness:app", "--app-dir",
                             str(ROOT / "tests" / "observe"), "--port", str(port), "--log-level", "warning",
                             "--no-access-log"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("harness server did not start")


async def _load(base: str, clients: int, seconds: float) -> int:
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"authorization": "Bearer sk-test-acme"}, limits=limits,
                                 timeout=30) as client:
        async def one() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                r = await client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 16})
                if r.status_code == 200:
                    done += 1
        await asyncio.gather(*(one() for _ in range(clients)))
    return done


def bench_throughput(clients: int, seconds: float, rounds: int) -> dict:
    results: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as d, Progress(console=console) as progress:
        task = progress.add_task(f"throughput, {clients} clients", total=2 * rounds)
        for r in range(rounds):
            for enabled in ((True, False) if r % 2 == 0 else (False, True)):  # alternate to cancel drift
                proc, base = _start_server(enabled, Path(d))
                try:
                    asyncio.run(_load(base, clients, 1.0))  # warm-up
                    n = asyncio.run(_load(base, clients, seconds))
                    results[enabled].append(n / seconds)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
                progress.advance(task)
    on, off = statistics.median(results[True]), statistics.median(results[False])
    return {"on_rps": on, "off_rps": off, "loss_pct": (off - on) / off * 100, "on_all": results[True],
            "off_all": results[False]}


# ---------------- store write rate ----------------

def bench_write(url: str, n: int) -> dict:
    tracer = Tracer(ObserveSettings(store_url=url, queue_size=max(n, 1000), batch_size=500, flush_interval_s=0.05,
                                    capture="redacted", retention_rows=None, retention_days=None), metrics=Metrics())
    tracer.flush()
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(n):
        t = tracer.start(model="gpt-oss-20b", key_id=f"k{i % 20}", tenant_id="acme", session_id=f"s{i % 500}")
        with t.span("auth"):
            pass
        with t.span("guard.input"):
            pass
        with t.span("generation"):
            t.first_token()
        t.record(input_tokens=120, output_tokens=80, reasoning_tokens=20)
        t.capture(prompt=MESSAGES, response="the meeting covered the q3 roadmap and hiring, mail bob@corp.io")
        tracer.finish(t)
    submit_s = time.perf_counter() - start
    tracer.flush(timeout=600)
    total_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start  # request path + writer thread: all the CPU tracing costs
    tracer.close()
    return {"traces": n, "finish_us": submit_s / n * 1e6, "write_rate": n / total_s, "cpu_us": cpu_s / n * 1e6}


# ---------------- query latency at 1M ----------------

WORDS = ["invoice", "refund", "password", "meeting", "roadmap", "python", "error", "deploy", "kubernetes",
         "latency", "budget", "summary", "translate", "poem", "recipe", "contract"]


def _synthetic(i: int, now_ms: int, span_ms: int) -> dict:
    rnd = random.Random(i)
    latency = rnd.lognormvariate(0, 0.8)
    ttft = latency * rnd.uniform(0.05, 0.3)
    status = "error" if rnd.random() < 0.02 else "ok"
    words = " ".join(rnd.choice(WORDS) for _ in range(12))
    if i % 100_000 == 7:
        words += " zanzibar"  # a rare search term: ten matches in 1M
    inp, out = rnd.randint(20, 2000), rnd.randint(1, 800)
    return {"trace_id": uuid.UUID(int=rnd.getrandbits(128)).hex, "root_span_id": f"{i:016x}",
            "started_ms": now_ms - int(span_ms * (i / 1_000_000)), "ended_ms": now_ms,
            "tenant_id": f"t{i % 5}", "key_id": f"key-{i % 200}", "user_id": f"u{i % 5000}",
            "session_id": f"s{i % 50000}", "endpoint": "/v1/chat/completions",
            "model": ("gpt-oss-20b", "gpt-oss-120b")[i % 2], "backend": "native", "fallback": int(i % 97 == 0),
            "fallback_from": "upstream" if i % 97 == 0 else None, "stream": i % 2, "status": status,
            "http_status": 200 if status == "ok" else 500, "error_type": None if status == "ok" else "UpstreamError",
            "error_message": None, "finish_reason": "stop", "input_tokens": inp, "output_tokens": out,
            "reasoning_tokens": out // 4, "cached_tokens": inp // 3, "ttft_s": ttft, "tpot_s": 0.02,
            "latency_s": latency, "latency_bucket": latency_bucket(latency), "ttft_bucket": latency_bucket(ttft),
            "cost_tokens_usd": (inp * 0.1 + out * 0.5) / 1e6, "cost_hardware_usd": (inp + out) * 2e-7,
            "capture": "redacted", "preview": words, "prompt": f'[{{"role": "user", "content": "{words}"}}]',
            "response": "sure: " + words[:80], "reasoning": None, "attrs": "{}",
            "spans": '[{"span_id": "0", "parent_id": null, "name": "request", "start_ms": 0, "end_ms": 1}]'}


def fill(store: TraceStore, rows: int) -> float:
    have = store.count()
    if have >= rows:
        return 0.0
    now_ms = int(time.time() * 1000)
    start = time.perf_counter()
    with Progress(console=console) as progress:
        task = progress.add_task(f"filling {store.url.split(':')[0]}", total=rows, completed=have)
        for lo in range(have, rows, 5000):
            store.write([_synthetic(i, now_ms, 30 * 86_400_000) for i in range(lo, min(rows, lo + 5000))])
            progress.update(task, completed=min(rows, lo + 5000))
    return (rows - have) / (time.perf_counter() - start)


def _time(fn, repeat: int = 5) -> float:
    fn()  # warm the cache: we measure a dashboard in use, not the first query after boot
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def bench_query(store: TraceStore) -> dict[str, float]:
    now_ms = int(time.time() * 1000)
    some_id = store.list(limit=1, offset=12345)[0]["trace_id"]
    day = TraceFilter(since_ms=now_ms - 86_400_000)
    return {
        "list newest 50": _time(lambda: store.list(limit=50)),
        "list page 20 (offset 1000)": _time(lambda: store.list(limit=50, offset=1000)),
        "filter key (newest 50)": _time(lambda: store.list(TraceFilter(key_id="key-17"), limit=50)),
        "filter model+status=error": _time(lambda: store.list(TraceFilter(model="gpt-oss-120b", status="error"),
                                                               limit=50)),
        "filter session": _time(lambda: store.list(TraceFilter(session_id="s4242"), limit=50)),
        "search common word (newest 50)": _time(lambda: store.list(TraceFilter(q="kubernetes"), limit=50)),
        "search rare word (full scan)": _time(lambda: store.list(TraceFilter(q="zanzibar"), limit=50), repeat=3),
        "get by id": _time(lambda: store.get(some_id)),
        "stats 24h (~33k traces)": _time(lambda: store.stats(day, bucket_ms=1_800_000), repeat=3),
        "stats 7d, 1 key": _time(lambda: store.stats(TraceFilter(since_ms=now_ms - 7 * 86_400_000,
                                                                 key_id="key-3"), bucket_ms=3_600_000), repeat=3),
        "stats 30d (all 1M)": _time(lambda: store.stats(TraceFilter(), bucket_ms=86_400_000), repeat=1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["throughput", "write", "query", "all"], default="all")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--db-dir", default=str(Path(tempfile.gettempdir()) / "ossgate-observe-bench"),
                        help="where the 1M-trace SQLite file is kept between runs")
    args = parser.parse_args()
    pg = os.environ.get("OSSGATE_TEST_PG_URL")
    stores = [s for s in args.stores.split(",") if s == "sqlite" or (s == "postgres" and pg)]
    if "postgres" in args.stores and not pg:
        console.print("[yellow]OSSGATE_TEST_PG_URL unset: PostgreSQL parts skipped (source .ci/postgres.sh)")

    def url_for(kind: str, name: str) -> str:
        if kind == "sqlite":
            Path(args.db_dir).mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{Path(args.db_dir) / name}.db"
        import psycopg
        with psycopg.connect(pg, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
        return pg.rsplit("/", 1)[0] + "/" + name

    if args.part in ("throughput", "all"):
        r = bench_throughput(args.clients, args.seconds, args.rounds)
        console.print(f"throughput, {args.clients} clients: tracing off {r['off_rps']:.0f} req/s, on "
                      f"{r['on_rps']:.0f} req/s → loss {r['loss_pct']:.1f}%  (rounds off {r['off_all']}, "
                      f"on {r['on_all']})")
    if args.part in ("write", "all"):
        for kind in stores:
            url = url_for(kind, f"obs_write_{uuid.uuid4().hex[:8]}")
            r = bench_write(url, args.writes)
            console.print(f"write {kind}: {r['traces']} traces; building+finishing a trace {r['finish_us']:.0f} µs "
                          f"wall on the request path (writer thread running alongside); CPU per trace, all threads "
                          f"{r['cpu_us']:.0f} µs; end-to-end store write rate {r['write_rate']:.0f} traces/s")
            if kind == "postgres":
                import psycopg
                with psycopg.connect(pg, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            else:
                Path(url.removeprefix("sqlite:///")).unlink()
    if args.part in ("query", "all"):
        for kind in stores:
            store = TraceStore(url_for(kind, f"obs_bench_{args.rows}"))
            rate = fill(store, args.rows)
            if rate:
                console.print(f"fill {kind}: {rate:.0f} rows/s (bulk store.write, 5000 per transaction)")
            console.print(f"query latency, {kind}, {store.count()} traces (median ms):")
            for name, ms in bench_query(store).items():
                console.print(f"  {name:34s} {ms:9.2f}")
            store.close()


if __name__ == "__main__":
    main()
