"""GET /health (liveness + load per model, no key needed) and GET /metrics (Prometheus, via observe/)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ossgate.server.deps import ServicesDep

router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["health"])  # mounted when ossgate.observe (the metrics registry) is installed


@router.get("/health")
async def health(services: ServicesDep) -> dict[str, Any]:
    """200 with status ok | draining; 503 with status engine_down once a native engine's process has died."""
    draining = any(g.draining for g in services.gates.values())
    models = {}
    down = False
    for name, backend in services.router.backends.items():
        gate = services.gates[name]
        alive = getattr(backend, "alive", True)  # native backends: is the engine (process) still there
        down = down or not alive
        models[name] = {
            "backend": backend.kind,
            "in_flight": gate.in_flight,
            "rejected": gate.rejected,
            **({} if alive else {"engine": "down"}),
            **backend.stats(),
        }
    status = "engine_down" if down else "draining" if draining else "ok"
    body = {"status": status, "pipeline": services.pipeline.names, "models": models}
    return JSONResponse(body, status_code=503) if down else body


def _admission_lines(services) -> str:
    """The admission gates' figures, in Prometheus text format (appended to observe's registry output)."""
    lines = [
        "# HELP ossgate:admission_rejected_total Requests refused with 429 because the model's queue was full.",
        "# TYPE ossgate:admission_rejected_total counter",
    ]
    lines += [f'ossgate:admission_rejected_total{{model_name="{n}"}} {g.rejected}' for n, g in services.gates.items()]
    lines += [
        "# HELP ossgate:admission_in_flight Requests holding a place in the model's queue (running or waiting).",
        "# TYPE ossgate:admission_in_flight gauge",
    ]
    lines += [f'ossgate:admission_in_flight{{model_name="{n}"}} {g.in_flight}' for n, g in services.gates.items()]
    return "\n".join(lines) + "\n"


@metrics_router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    from ossgate.observe.metrics import METRICS  # noqa: PLC0415

    registry = services.tracer.metrics if services.tracer is not None else METRICS
    for name, backend in services.router.backends.items():
        s = backend.stats()
        registry.set_engine_stats(
            name,
            running=int(s.get("running", 0)),
            waiting=int(s.get("waiting", 0)),
            kv_cache_usage=float(s.get("kv_usage", 0.0)),
        )
    body, content_type = registry.payload()
    return Response(body + _admission_lines(services).encode(), media_type=content_type)
