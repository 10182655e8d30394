"""Everything the routes share, built once in the lifespan and reached through deps.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ossgate.backends.router import Router
from ossgate.server.access import KeyStore, RateLimiter
from ossgate.server.admission import AdmissionGate
from ossgate.server.db import Database
from ossgate.server.pipeline import Pipeline
from ossgate.server.store import ResponseStore
from ossgate.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyStore
    responses: ResponseStore
    router: Router
    gates: dict[str, AdmissionGate]
    limiter: RateLimiter
    pipeline: Pipeline
    tracer: Any = None  # observe.Tracer when ossgate.observe is installed
    embedder: Any = None  # rag embedder when ossgate.rag is installed
    extras: dict[str, Any] = field(default_factory=dict)

    def drain(self) -> None:
        """Refuse new generations (503) from now on; running ones continue."""
        for gate in self.gates.values():
            gate.draining = True

    def abort_all(self) -> None:
        for backend in self.router.backends.values():
            backend.abort_all()
