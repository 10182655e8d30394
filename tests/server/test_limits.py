"""The admission gate and the per-key rate limiter, in-process."""

from __future__ import annotations

import pytest

from ossgate.errors import Overloaded
from ossgate.server.access import ApiKey, KeyStore, RateLimited, RateLimiter
from ossgate.server.admission import AdmissionGate, ShuttingDown
from ossgate.server.db import Database


def test_gate_admits_running_plus_queue_then_refuses():
    gate = AdmissionGate("m", max_running=2, queue_size=1)
    tickets = [gate.acquire() for _ in range(3)]
    with pytest.raises(Overloaded) as e:
        gate.acquire()
    assert e.value.retry_after >= 1 and gate.rejected == 1
    tickets[0].release()
    tickets[0].release()  # idempotent
    assert gate.in_flight == 2
    gate.acquire()
    with pytest.raises(Overloaded):
        gate.acquire(slots=2)  # n choices take n places


def test_draining_gate_refuses_with_503():
    gate = AdmissionGate("m", 1, 0)
    gate.draining = True
    with pytest.raises(ShuttingDown) as e:
        gate.acquire()
    assert e.value.status == 503


def test_rate_limiter_requests_and_token_debt():
    key = ApiKey("k1", "k", "og-", 0.0, requests_per_minute=2, tokens_per_minute=100)
    limiter = RateLimiter(None, None)
    limiter.admit(key)
    limiter.admit(key)
    with pytest.raises(RateLimited) as e:
        limiter.admit(key)
    assert e.value.code == "rate_limit_exceeded" and e.value.status == 429 and e.value.retry_after > 0
    other = ApiKey("k2", "other", "og-", 0.0, tokens_per_minute=100)
    limiter.admit(other)
    limiter.charge(other, 150)  # a long answer puts the key in debt; its next request waits
    with pytest.raises(RateLimited, match="token rate"):
        limiter.admit(other)
    free = ApiKey("k3", "free", "og-", 0.0)
    for _ in range(100):
        limiter.admit(free)  # no limits configured: never refused


def test_key_store_hashes_and_revokes(tmp_path):
    keys = KeyStore(Database(f"sqlite:///{tmp_path / 'k.db'}"))
    assert keys.authenticate(None).name == "anonymous"  # no keys yet: open
    key, secret = keys.create("ci", tenant="team-a")
    assert keys.authenticate(f"Bearer {secret}") == key and key.tenant == "team-a"
    with pytest.raises(Exception, match="missing API key"):
        keys.authenticate(None)
    keys.revoke("ci")
    assert keys.authenticate("Bearer anything").name == "anonymous"  # the last key revoked: open again


def test_network_server_stays_locked_when_the_last_key_is_revoked(tmp_path):
    keys = KeyStore(Database(f"sqlite:///{tmp_path / 'k.db'}"), open_without_keys=False)
    keys.create("only")
    keys.revoke("only")
    with pytest.raises(Exception, match="missing API key"):
        keys.authenticate(None)
    with pytest.raises(Exception, match="invalid or revoked"):
        keys.authenticate("Bearer og-old")
