"""The app factory: wiring only. Models load in the lifespan, never at import."""

from __future__ import annotations

import importlib.util
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ossgate.backends.router import Router
from ossgate.errors import InvalidRequest
from ossgate.server import chat, completions, error_json, health, models, responses, tokenize
from ossgate.server.access import KeyStore, RateLimiter
from ossgate.server.admission import AdmissionGate
from ossgate.server.db import Database
from ossgate.server.deps import authenticate
from ossgate.server.pipeline import build_pipeline
from ossgate.server.services import Services
from ossgate.server.store import ResponseStore
from ossgate.settings import Settings

log = logging.getLogger(__name__)

HAS_OBSERVE = importlib.util.find_spec("ossgate.observe") is not None
HAS_RAG = importlib.util.find_spec("ossgate.rag.retrieve") is not None


def check_exposure(settings: Settings, keys: KeyStore) -> None:
    """Refuse to serve a network address with no API key: anyone who reaches it could use the model."""
    if not settings.loopback and not settings.allow_unauthenticated and not keys.any_active():
        raise InvalidRequest(
            f"refusing to listen on {settings.host} without API keys: create one (ossgate keys create --name NAME) "
            "or set allow_unauthenticated = true (--allow-unauthenticated) if something else guards the network"
        )


async def build_services(settings: Settings) -> Services:
    if settings.torch_threads is not None:
        import torch  # noqa: PLC0415 - only native models need it

        torch.set_num_threads(settings.torch_threads)
    db = Database(settings.database_url)
    keys = KeyStore(db, open_without_keys=settings.loopback or settings.allow_unauthenticated)
    check_exposure(settings, keys)
    router = Router.from_settings(settings.resolved_models())
    await router.start()
    gates = {name: AdmissionGate(name, b.max_running, settings.queue_size) for name, b in router.backends.items()}
    limiter = RateLimiter(settings.default_requests_per_minute, settings.default_tokens_per_minute)
    tracer = None
    if HAS_OBSERVE and settings.observe is not None:
        from ossgate.observe import Tracer  # noqa: PLC0415

        tracer = Tracer(settings.observe)
    retrieval = None
    if HAS_RAG and settings.rag is not None:
        from ossgate.server.retrieval import RetrieveStage  # noqa: PLC0415

        retrieval = RetrieveStage(settings.rag)
    pipeline = build_pipeline(router, gates, limiter, tracer=tracer, retrieval=retrieval)
    log.info("pipeline: %s", " -> ".join(pipeline.names))
    return Services(
        settings,
        db,
        keys,
        ResponseStore(db),
        router,
        gates,
        limiter,
        pipeline,
        tracer=tracer,
        extras={"started_at": time.time()},
    )


async def close_services(services: Services) -> None:
    services.drain()
    await services.router.close()
    if services.tracer is not None:
        services.tracer.close()
    services.db.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.load()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = app.state.services = await build_services(settings)
        if services.tracer is not None:
            from ossgate.observe import make_router  # noqa: PLC0415

            app.include_router(
                make_router(services.tracer, auth=authenticate, tenant_of=lambda key: key.tenant if key.id else None)
            )
        try:
            yield
        finally:
            await close_services(services)

    app = FastAPI(title="ossgate", version="0.1.0", lifespan=lifespan)
    error_json.install(app)
    for module in (chat, responses, completions, models, tokenize, health):
        app.include_router(module.router)
    if HAS_OBSERVE:
        app.include_router(health.metrics_router)
    if HAS_RAG:
        from ossgate.server import embeddings  # noqa: PLC0415

        app.include_router(embeddings.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    return app
