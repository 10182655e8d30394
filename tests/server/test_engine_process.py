"""`ossgate serve` with the engine in its own process (the default) and in a thread: same answers; the engine
process ends with the server, even a killed one; a killed engine gives clients a clear error, not a hang."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
from server_procs import ServerProcess, tiny_model

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Count to ten"}], "max_tokens": 24, "temperature": 0}


def engine_pids(server_pid: int) -> list[int]:
    """The server's child processes that run the engine (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server_pid and "ossgate.engine.engine_process" in cmdline:
            pids.append(int(entry.name))
    return pids


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # exited; a zombie only waits for its (new) parent to reap it


def wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.1)
    return False


def answer(server: ServerProcess) -> str:
    r = httpx.post(server.url + "/chat/completions", json=CHAT, timeout=120)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    return (choice["message"].get("reasoning") or "") + "|" + (choice["message"]["content"] or "")


def test_thread_and_process_engines_answer_the_same_and_the_engine_ends_with_the_server(
    tmp_path, ossgate_home, tiny_checkpoint
):
    threaded = ServerProcess(tmp_path / "thread", [tiny_model(tiny_checkpoint, engine="thread")], ossgate_home).start()
    try:
        assert engine_pids(threaded.proc.pid) == []
        expected = answer(threaded)
    finally:
        threaded.stop()
    server = ServerProcess(tmp_path / "process", [tiny_model(tiny_checkpoint)], ossgate_home).start()
    try:
        [pid] = engine_pids(server.proc.pid)
        assert answer(server) == expected
    finally:
        code = server.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM)
    assert wait_gone(pid), "the engine process outlived the server"
    assert "Traceback" not in server.read_log()


def test_the_engine_exits_when_the_server_is_killed(tmp_path, ossgate_home, tiny_checkpoint):
    server = ServerProcess(tmp_path, [tiny_model(tiny_checkpoint)], ossgate_home).start()
    [pid] = engine_pids(server.proc.pid)
    server.stop(signal.SIGKILL)  # no shutdown code runs: the engine notices its closed pipe
    assert wait_gone(pid), "the engine process was orphaned"


def test_a_killed_engine_gives_clients_a_clear_error(tmp_path, ossgate_home, tiny_checkpoint):
    server = ServerProcess(tmp_path, [tiny_model(tiny_checkpoint)], ossgate_home).start()
    try:
        [pid] = engine_pids(server.proc.pid)
        body = CHAT | {"max_tokens": 50_000, "stream": True}
        with (
            httpx.Client(base_url=server.base, timeout=60) as c,
            c.stream("POST", "/v1/chat/completions", json=body) as r,
        ):
            assert r.status_code == 200
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data:"))
            os.kill(pid, signal.SIGKILL)
            rest = [line for line in lines if line.startswith("data:")]
        assert rest[-1] == "data: [DONE]"
        error = json.loads(rest[-2][5:])["error"]
        assert error["code"] == "engine_unavailable" and "engine process" in error["message"]
        after = httpx.post(server.url + "/chat/completions", json=CHAT, timeout=60)
        assert after.status_code == 503 and after.json()["error"]["code"] == "engine_unavailable"
        health = httpx.get(server.base + "/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "engine_down"
    finally:
        code = server.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM)
