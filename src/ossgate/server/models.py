"""GET /v1/models, GET /v1/models/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ossgate.server.deps import KeyDep, ServicesDep

router = APIRouter(tags=["models"])


def model_json(services, name: str) -> dict[str, Any]:
    backend = services.router.pick(name)
    return {
        "id": name,
        "object": "model",
        "created": int(services.extras.get("started_at", 0)),
        "owned_by": "ossgate",
        "backend": backend.kind,
        "context_length": backend.context,
    }


@router.get("/v1/models")
async def list_models(services: ServicesDep, key: KeyDep) -> dict[str, Any]:
    return {"object": "list", "data": [model_json(services, name) for name in services.router.backends]}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, services: ServicesDep, key: KeyDep) -> dict[str, Any]:
    return model_json(services, model_id)
