"""HTTP surface of observe/: trace list, detail, feedback scores, chart aggregates, and the dashboard.

    router = make_router(tracer, auth=require_api_key, tenant_of=lambda principal: principal.tenant_id)
    app.include_router(router)

`auth` is any FastAPI dependency (the server's API-key check); its return value (the "principal") is
passed to `tenant_of`, which returns the tenant a caller may see (None: all tenants, e.g. an admin key).
Handlers raise `ossgate.errors.OssgateError` subclasses; the server's exception handler turns them into
OpenAI-style error JSON. The dashboard page and its assets (`/ui`, `/ui/assets/…`) hold no data and are
served without the key: the page asks for the API key and sends it as a Bearer token on every data call,
which all go through `auth`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from ossgate.errors import NotFound
from ossgate.observe.store import TraceFilter
from ossgate.observe.timespec import auto_bucket_ms, parse_time_ms
from ossgate.observe.tracer import Tracer

_ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


class ScoreIn(BaseModel):
    """Feedback on a trace: thumbs (value up/down), numeric (value a number) or categorical (label)."""

    name: str = Field("user_feedback", min_length=1, max_length=100)
    kind: Literal["thumbs", "numeric", "categorical"] = "thumbs"
    value: float | bool | str | None = None
    label: str | None = Field(None, max_length=200)
    comment: str | None = Field(None, max_length=10_000)
    author: str | None = Field(None, max_length=200)


def _static(name: str) -> str:
    return resources.files("ossgate.observe").joinpath("static", name).read_text(encoding="utf-8")


def query_filters(since: str | None = None, until: str | None = None, tenant_id: str | None = None,
                  key_id: str | None = None, user_id: str | None = None, session_id: str | None = None,
                  model: str | None = None, backend: str | None = None, status: str | None = None,
                  error_type: str | None = None, endpoint: str | None = None, fallback: bool | None = None,
                  min_latency_s: float | None = None,
                  q: Annotated[str | None, Query(max_length=200)] = None) -> TraceFilter:
    """The trace filters every list/stats endpoint takes as query parameters."""
    return TraceFilter(since_ms=parse_time_ms(since, param="since"), until_ms=parse_time_ms(until, param="until"),
                       tenant_id=tenant_id, key_id=key_id, user_id=user_id, session_id=session_id, model=model,
                       backend=backend, status=status, error_type=error_type, endpoint=endpoint,
                       fallback=fallback, min_latency_s=min_latency_s, q=q or None)


Filters = Annotated[TraceFilter, Depends(query_filters)]


def make_router(tracer: Tracer, *, auth: Callable[..., Any] | None = None,
                tenant_of: Callable[[Any], str | None] | None = None) -> APIRouter:
    """The observe/ routes bound to `tracer`, with data endpoints behind the `auth` dependency."""

    async def no_auth() -> None:
        return None

    principal_dep = Depends(auth or no_auth)
    router = APIRouter()

    def scoped(principal: Any, flt: TraceFilter) -> TraceFilter:
        tenant = tenant_of(principal) if tenant_of else None
        if tenant is not None:
            flt.tenant_id = tenant
        return flt

    def visible(principal: Any, trace_id: str) -> dict[str, Any]:
        trace = tracer.get(trace_id)
        tenant = tenant_of(principal) if tenant_of else None
        if tenant is not None and trace.get("tenant_id") != tenant:
            raise NotFound(f"no trace with id {trace_id!r}")  # do not reveal other tenants' ids
        return trace


    @router.get("/v1/traces", tags=["traces"])
    def list_traces(flt: Filters, limit: int = Query(50, ge=1, le=1000),
                    offset: int = Query(0, ge=0), principal: Any = principal_dep) -> dict[str, Any]:
        """Trace summaries, newest first, filtered; page with `offset` while `has_more`."""
        store = tracer.require_store()
        rows = store.list(scoped(principal, flt), limit=limit + 1, offset=offset)
        has_more = len(rows) > limit
        return {"object": "list", "data": rows[:limit], "has_more": has_more,
                "next_offset": offset + limit if has_more else None}

    @router.get("/v1/traces/stats", tags=["traces"])
    def trace_stats(flt: Filters, bucket: float | None = Query(None, ge=1),
                    principal: Any = principal_dep) -> dict[str, Any]:
        """Aggregates per time bucket (requests, errors, tokens, cost, latency/TTFT p50/p90/p99) and cost
        per model, key and day. Defaults to the last 24 hours."""
        store = tracer.require_store()
        flt = scoped(principal, flt)
        now_ms = int(time.time() * 1000)
        if flt.since_ms is None:
            flt.since_ms = now_ms - 86_400_000
        until = flt.until_ms or now_ms
        bucket_ms = int(bucket * 1000) if bucket else auto_bucket_ms(flt.since_ms, until)
        result = store.stats(flt, bucket_ms=bucket_ms)
        result.update({"since": flt.since_ms / 1000.0, "until": until / 1000.0})
        return result

    @router.get("/v1/traces/facets", tags=["traces"])
    def trace_facets(principal: Any = principal_dep) -> dict[str, list[str]]:
        """Values seen recently for the filter drop-downs (last 7 days)."""
        store = tracer.require_store()
        flt = scoped(principal, TraceFilter(since_ms=int(time.time() * 1000) - 7 * 86_400_000))
        return {col: store.distinct(col, flt) for col in ("model", "key_id", "status", "backend", "tenant_id")}

    @router.get("/v1/traces/{trace_id}", tags=["traces"])
    def get_trace(trace_id: str, principal: Any = principal_dep) -> dict[str, Any]:
        """One trace with its spans, captured content (per the capture policy) and scores."""
        return visible(principal, trace_id)

    @router.post("/v1/traces/{trace_id}/scores", tags=["traces"], status_code=201)
    def add_score(trace_id: str, body: ScoreIn, principal: Any = principal_dep) -> dict[str, Any]:
        """Attach feedback (thumbs / numeric / categorical, with an optional comment) to a trace."""
        if tenant_of is not None and tenant_of(principal) is not None:
            visible(principal, trace_id)
        return tracer.add_score(trace_id, name=body.name, kind=body.kind, value=body.value, label=body.label,
                                comment=body.comment, author=body.author)

    @router.get("/ui", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @router.get("/ui/assets/{name}", include_in_schema=False)
    def dashboard_asset(name: str) -> Response:
        if name not in _ASSETS:
            raise NotFound(f"no dashboard asset {name!r}")
        return Response(_static(name), media_type=_ASSETS[name], headers={"cache-control": "no-cache"})

    return router
