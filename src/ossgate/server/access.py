"""API keys (stored hashed) and per-key rate limits.

A key is `og-` + 32 random bytes (urlsafe base64). Only its SHA-256 is stored: the key has 256 bits of
entropy, so a slow password hash would add latency to every request and no security. The server
requires a key as soon as one active key exists; with none it is open, which `ossgate serve` allows
only on a loopback address unless `allow_unauthenticated` is set.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
import uuid
from dataclasses import dataclass

from ossgate.errors import AuthError, InvalidRequest, NotFound, Overloaded
from ossgate.server.db import Database

SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION,
    requests_per_minute INTEGER,
    tokens_per_minute INTEGER,
    tenant TEXT NOT NULL DEFAULT 'default'
)"""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str  # the first characters, to recognise a key in listings
    created_at: float
    revoked_at: float | None = None
    requests_per_minute: int | None = None  # None: the server default
    tokens_per_minute: int | None = None
    tenant: str = "default"  # whose documents (RAG collections) and traces the key sees


ANONYMOUS = ApiKey(id="", name="anonymous", prefix="", created_at=0.0)
_COLUMNS = "id, name, prefix, created_at, revoked_at, requests_per_minute, tokens_per_minute, tenant"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, db: Database, *, open_without_keys: bool = True) -> None:
        self.db = db
        # False on a network address: revoking the last key must lock the server, not open it
        self.open_without_keys = open_without_keys
        db.execute(SCHEMA)

    def create(
        self,
        name: str,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        tenant: str = "default",
    ) -> tuple[ApiKey, str]:
        """A new key: (record, secret). The secret is shown once and never stored."""
        if not name.strip():
            raise InvalidRequest("a key needs a non-empty --name")
        if self.db.query("SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,)):
            raise InvalidRequest(f"an active key named {name!r} exists; revoke it or choose another name")
        secret = "og-" + secrets.token_urlsafe(32)
        key = ApiKey(
            uuid.uuid4().hex[:12], name, secret[:7], time.time(), None, requests_per_minute, tokens_per_minute, tenant
        )
        self.db.execute(
            "INSERT INTO api_keys (id, name, prefix, hash, created_at, requests_per_minute, tokens_per_minute, tenant)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.name,
                key.prefix,
                hash_key(secret),
                key.created_at,
                requests_per_minute,
                tokens_per_minute,
                tenant,
            ),
        )
        return key, secret

    def list(self) -> list[ApiKey]:
        rows = self.db.query(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")
        return [ApiKey(*r) for r in rows]

    def revoke(self, name_or_id: str) -> ApiKey:
        active = [k for k in self.list() if k.revoked_at is None and name_or_id in (k.id, k.name)]
        if not active:
            raise NotFound(f"no active key with name or id {name_or_id!r} (see `ossgate keys list`)")
        self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), active[0].id))
        return active[0]

    def any_active(self) -> bool:
        return bool(self.db.query("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1"))

    def authenticate(self, authorization: str | None) -> ApiKey:
        """The key a request's `Authorization: Bearer …` header names; ANONYMOUS when no key exists at all."""
        secret = (authorization or "").removeprefix("Bearer ").strip()
        if secret:
            rows = self.db.query(
                f"SELECT {_COLUMNS} FROM api_keys WHERE hash = ?",
                (hash_key(secret),),
            )
            if rows and rows[0][4] is None:
                return ApiKey(*rows[0])
            if not self.any_active() and self.open_without_keys:
                return ANONYMOUS  # keys are not in use: a client's placeholder key (e.g. "EMPTY") is fine
            raise AuthError("invalid or revoked API key", code="invalid_api_key")
        if self.any_active() or not self.open_without_keys:
            raise AuthError(
                "missing API key: send `Authorization: Bearer <key>` (create one: ossgate keys create)",
                code="missing_api_key",
            )
        return ANONYMOUS


class RateLimited(Overloaded):
    """A key went over its request or token rate (429, like the admission queue, but its own code)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = "rate_limit_exceeded"


class _Bucket:
    """Token bucket holding up to one minute of allowance, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.rate = per_minute / 60.0
        self.stamp = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def seconds_until(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate)


class RateLimiter:
    """Per-key requests/minute and tokens/minute, in this process.

    Tokens are charged after the fact (a request's size is known only when it ends), so a key may go
    into debt by one request; its next request waits until the debt is paid back.
    """

    def __init__(self, default_rpm: int | None, default_tpm: int | None) -> None:
        self.default_rpm, self.default_tpm = default_rpm, default_tpm
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}

    def _bucket(self, table: dict[str, _Bucket], key: str, limit: int | None) -> _Bucket | None:
        if limit is None:
            return None
        b = table.get(key)
        if b is None or b.capacity != limit:
            b = table[key] = _Bucket(limit)
        b.refill()
        return b

    def admit(self, key: ApiKey) -> None:
        """Take one request from the key's allowance, or raise RateLimited with a Retry-After."""
        tokens = self._bucket(self._tokens, key.id, key.tokens_per_minute or self.default_tpm)
        if tokens is not None and tokens.level < 0:
            wait = tokens.seconds_until(0)
            raise RateLimited(
                f"API key {key.name!r} is over its token rate of {int(tokens.capacity)} tokens per minute; "
                f"retry in {math.ceil(wait)} s",
                retry_after=wait,
            )
        requests = self._bucket(self._requests, key.id, key.requests_per_minute or self.default_rpm)
        if requests is not None:
            if requests.level < 1:
                wait = requests.seconds_until(1)
                raise RateLimited(
                    f"API key {key.name!r} is over its rate of {int(requests.capacity)} requests per minute; "
                    f"retry in {math.ceil(wait)} s",
                    retry_after=wait,
                )
            requests.level -= 1

    def charge(self, key: ApiKey, tokens: int) -> None:
        bucket = self._bucket(self._tokens, key.id, key.tokens_per_minute or self.default_tpm)
        if bucket is not None:
            bucket.level -= tokens
