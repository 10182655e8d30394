"""Helpers and fixtures for tests that run real `ossgate serve` processes: a subprocess on a free
loopback port, OSSGATE_HOME in a temporary directory, a writer-made tiny checkpoint (random weights: random harmony,
fine for protocol, error and pressure tests) — and the trained nano model where behaviour matters."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        return f'"{v}"'
    return str(v)


def write_config(path: Path, server: dict, models: list[dict], extra: str = "") -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in server.items()]
    for m in models:
        lines.append("[[models]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in m.items()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


class ServerProcess:
    """One `ossgate serve` subprocess. `url` is its /v1 base URL."""

    def __init__(self, workdir: Path, models: list[dict], home: Path, rag: dict | None = None, **server) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = server.pop("port", None) or free_port()
        server = {"port": self.port, "database_url": f"sqlite:///{workdir / 'ossgate.db'}", **server}
        extra = f'[observe]\nstore_url = "sqlite:///{workdir / "traces.db"}"\n'
        if rag:
            extra += "[rag]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in rag.items())
        self.config = write_config(workdir / "ossgate.toml", server, models, extra)
        # one torch thread: the test machine's 2 cores are shared, and OpenMP barriers stall under contention
        self.env = {**os.environ, "OSSGATE_HOME": str(home), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/v1"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [sys.executable, "-m", "ossgate.server.cli", *args, "-c", str(self.config)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.workdir,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"ossgate {' '.join(args)} failed: {out.stderr}")
        return out

    def start(self, *extra: str, wait: bool = True) -> ServerProcess:
        self.log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ossgate.server.cli",
                "serve",
                "-c",
                str(self.config),
                "--log-level",
                "warning",
                *extra,
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not become ready:\n{self.read_log()}")

    def read_log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")[-5000:]

    def health(self) -> dict:
        return httpx.get(self.base + "/health", timeout=10).json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        code, self.proc = self.proc.returncode, None
        return code


@pytest.fixture(scope="session")
def ossgate_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("ossgate-home")
    old = os.environ.get("OSSGATE_HOME")
    os.environ["OSSGATE_HOME"] = str(home)
    from ossgate.vocab import provision_vocabulary

    provision_vocabulary(home / "vocab")
    yield home
    if old is None:
        os.environ.pop("OSSGATE_HOME", None)
    else:
        os.environ["OSSGATE_HOME"] = old


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, ossgate_home) -> Path:
    from ossgate.model.config import shape_config
    from ossgate.model.writer import new_checkpoint

    path = tmp_path_factory.mktemp("tiny-checkpoint")
    new_checkpoint(shape_config("tiny"), path, seed=0)
    return path


def tiny_model(path: Path, **kw) -> dict:
    return {"name": "tiny", "path": path, "max_running": 4, **kw}


@pytest.fixture(scope="session")
def nano_path() -> Path:
    """The trained gpt-oss-nano checkpoint; tests that need real model behaviour skip without it."""
    try:
        from ossgate.nano import model_path
    except ImportError:
        pytest.skip("ossgate.nano.model_path is not available yet")
    from ossgate.errors import OssgateError

    try:
        return Path(model_path())
    except OssgateError as e:  # the package does not ship the trained model yet
        pytest.skip(f"gpt-oss-nano is not available: {e}")


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory, ossgate_home, tiny_checkpoint):
    server = ServerProcess(tmp_path_factory.mktemp("server"), [tiny_model(tiny_checkpoint)], ossgate_home).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(tiny_server):
    from openai import OpenAI

    return OpenAI(base_url=tiny_server.url, api_key="unused", max_retries=0, timeout=120)
