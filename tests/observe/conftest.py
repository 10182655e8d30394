"""Fixtures for observe/ tests: an isolated data dir, both trace stores, the harness server, an OTLP receiver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def ossgate_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("OSSGATE_HOME", str(home))
    for key in list(os.environ):
        if key.startswith("OSSGATE_OBSERVE_"):
            monkeypatch.delenv(key)
    return home


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped afterwards) on the server at OSSGATE_TEST_PG_URL."""
    base = os.environ.get("OSSGATE_TEST_PG_URL")
    if not base:
        pytest.skip("OSSGATE_TEST_PG_URL is not set (source .ci/postgres.sh to start a PostgreSQL)")
    import psycopg

    name = f"ossgate_observe_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both stores: every test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'traces.db'}"
    return request.getfixturevalue("pg_url")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    base_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, key: str = "sk-test-acme", **kw) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log_path.read_text()


def start_harness(env_overrides: dict[str, str], log_path: Path) -> Server:
    port = free_port()
    env = {**os.environ, **env_overrides}
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "observe_harness:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--timeout-graceful-shutdown", "30"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"harness server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"harness server did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return Server(proc, base, log_path, env_overrides)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator:
    """Factory: harness(**OSSGATE_OBSERVE_* overrides) → a running Server; all are stopped at teardown."""
    servers: list[Server] = []

    def start(**settings: str) -> Server:
        env = {f"OSSGATE_OBSERVE_{k.upper()}": str(v) for k, v in settings.items()}
        env.setdefault("OSSGATE_OBSERVE_STORE_URL", f"sqlite:///{tmp_path / 'traces.db'}")
        env.setdefault("OSSGATE_OBSERVE_FLUSH_INTERVAL_S", "0.05")
        server = start_harness(env, tmp_path / f"server{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def otlp_receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A separate process speaking OTLP/HTTP (protobuf), writing every received span as a JSON line."""
    port = free_port()
    out = tmp_path / "otlp_spans.jsonl"
    proc = subprocess.Popen([sys.executable, str(HERE / "otlp_receiver.py"), "--port", str(port), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "listening" once bound
    assert "listening" in line, line
    yield f"http://127.0.0.1:{port}", out
    proc.terminate()
    proc.wait(10)
