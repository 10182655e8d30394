"""API keys (created with the CLI, stored hashed), per-key rate limits, and the refusal to expose a
key-less server beyond loopback."""

from __future__ import annotations

import sqlite3

import openai
import pytest
from server_procs import ServerProcess, tiny_model

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, ossgate_home, tiny_checkpoint):
    server = ServerProcess(tmp_path_factory.mktemp("keys"), [tiny_model(tiny_checkpoint)], ossgate_home)
    yield server
    server.stop()


def test_non_loopback_without_keys_is_refused(keyed_server):
    out = keyed_server.cli("serve", "--host", "0.0.0.0", check=False)
    assert out.returncode == 1
    assert "without API keys" in out.stderr and "Traceback" not in out.stderr


def test_keys_are_required_once_one_exists_and_stored_hashed(keyed_server):
    secret = keyed_server.cli("keys", "create", "--name", "alice").stdout.strip()
    limited = keyed_server.cli("keys", "create", "--name", "bob", "--rpm", "2").stdout.strip()
    assert secret.startswith("og-") and limited != secret
    db = keyed_server.workdir / "ossgate.db"
    stored = sqlite3.connect(db).execute("SELECT hash FROM api_keys").fetchall()
    assert secret not in {h for (h,) in stored}
    listing = keyed_server.cli("keys", "list").stdout
    assert "alice" in listing and secret not in listing
    keyed_server.start()

    def client(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=keyed_server.url, api_key=key, max_retries=0, timeout=60)

    assert client(secret).chat.completions.create(model="tiny", messages=USER, max_tokens=2).choices
    with pytest.raises(openai.AuthenticationError) as e:
        client("og-wrong").chat.completions.create(model="tiny", messages=USER, max_tokens=2)
    assert e.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client("og-wrong").models.list()

    # bob: 2 requests per minute, the third is refused with a Retry-After
    bob = client(limited)
    bob.models.list()  # non-generating routes are not rate limited
    for _ in range(2):
        bob.chat.completions.create(model="tiny", messages=USER, max_tokens=1)
    with pytest.raises(openai.RateLimitError) as e:
        bob.chat.completions.create(model="tiny", messages=USER, max_tokens=1)
    assert e.value.body["code"] == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1

    # a response stored under one key is invisible to another
    r = client(secret).responses.create(model="tiny", input="x", max_output_tokens=1)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(r.id)

    keyed_server.cli("keys", "revoke", "alice")
    with pytest.raises(openai.AuthenticationError):
        client(secret).chat.completions.create(model="tiny", messages=USER, max_tokens=1)


def test_keys_cli_errors(keyed_server):
    out = keyed_server.cli("keys", "revoke", "nobody", check=False)
    assert out.returncode == 1 and "no active key" in out.stderr and "Traceback" not in out.stderr
    out = keyed_server.cli("keys", "create", "--name", "bob", check=False)
    assert out.returncode == 1 and "exists" in out.stderr
