"""Under pressure: a full queue answers 429 with Retry-After, a client that leaves frees its engine slot,
and shutdown ends in-flight streams cleanly. One running slot and one queue place make it deterministic."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest
from server_procs import ServerProcess, tiny_model

LONG = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "Write forever"}],
    "max_tokens": 50_000,
    "temperature": 0,
}


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, ossgate_home, tiny_checkpoint):
    server = ServerProcess(
        tmp_path_factory.mktemp("pressure"),
        [tiny_model(tiny_checkpoint, max_running=1)],
        ossgate_home,
        queue_size=1,
        shutdown_grace_s=1,
    ).start()
    yield server
    server.stop()


def wait_idle(server: ServerProcess, timeout: float = 60) -> dict:
    """Poll /health until no request holds a place or an engine slot (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = server.health()["models"]["tiny"]
        if m["in_flight"] == 0 and m["running"] == 0 and m["waiting"] == 0:
            return m
        time.sleep(0.1)
    raise AssertionError(f"server still busy: {server.health()}")


def open_stream(client: httpx.Client, body: dict):
    """Start a streaming request and read its first chunk: sent once the engine has the request."""
    cm = client.stream("POST", "/v1/chat/completions", json=body | {"stream": True})
    response = cm.__enter__()
    assert response.status_code == 200
    lines = response.iter_lines()
    for line in lines:
        if line.startswith("data:"):
            break
    return cm, response, lines


def test_full_queue_answers_429_and_disconnect_frees_the_slot(small_server):
    before = small_server.health()["models"]["tiny"]["tokens_generated"]
    with (
        httpx.Client(base_url=small_server.base, timeout=60) as c1,
        httpx.Client(base_url=small_server.base, timeout=60) as c2,
    ):
        running = open_stream(c1, LONG)  # holds the one engine slot
        queued = c2.stream("POST", "/v1/chat/completions", json=LONG | {"stream": True})
        queued_response = queued.__enter__()  # takes the one queue place (waits inside the engine)
        assert queued_response.status_code == 200
        r = httpx.post(small_server.url + "/chat/completions", json=LONG | {"max_tokens": 5}, timeout=60)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error" and r.json()["error"]["code"] == "overloaded"
        assert small_server.health()["models"]["tiny"]["rejected"] == 1
        # both clients leave mid-generation
        queued.__exit__(None, None, None)
        running[0].__exit__(None, None, None)
    idle = wait_idle(small_server)
    generated = idle["tokens_generated"] - before
    assert generated < 50_000, "the abandoned generation ran to max_tokens instead of being cancelled"
    ok = httpx.post(small_server.url + "/chat/completions", json=LONG | {"max_tokens": 3}, timeout=60)
    assert ok.status_code == 200


def test_non_streaming_disconnect_cancels(small_server):
    before = small_server.health()["models"]["tiny"]["tokens_generated"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(small_server.url + "/chat/completions", json=LONG, timeout=httpx.Timeout(60, read=2))
    idle = wait_idle(small_server)
    assert idle["tokens_generated"] - before < 50_000


def test_shutdown_ends_streams_cleanly(tmp_path, ossgate_home, tiny_checkpoint):
    server = ServerProcess(
        tmp_path, [tiny_model(tiny_checkpoint, max_running=1)], ossgate_home, shutdown_grace_s=1
    ).start()
    with httpx.Client(base_url=server.base, timeout=60) as c:
        cm, response, lines = open_stream(c, LONG)
        server.proc.send_signal(signal.SIGTERM)
        rest = [line for line in lines if line]
        cm.__exit__(None, None, None)
    # uvicorn re-raises the captured SIGTERM after its clean shutdown, so the exit status is -SIGTERM
    assert server.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in server.read_log()
    assert rest[-1] == "data: [DONE]"
    finish = [
        json.loads(x[5:])["choices"][0]["finish_reason"]
        for x in rest
        if x.startswith("data: {") and json.loads(x[5:])["choices"]
    ]
    assert finish[-1] == "abort"
