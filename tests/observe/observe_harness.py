"""Test harness: a minimal FastAPI app that mounts observe/'s router and traces requests the way the
ossgate server does (auth → guard.input → retrieval → generation with tool calls → guard.output).

The generation stage echoes the user's words as "tokens" (optionally with a delay per token); it stands
in for the engine, which is not what these tests are about. Run it with real uvicorn:

    OSSGATE_OBSERVE_STORE_URL=sqlite:///… uvicorn observe_harness:app --app-dir tests/observe
"""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from ossgate.errors import AuthError, InvalidRequest, OssgateError
from ossgate.observe import METRICS, TRACE_HEADER, ObserveSettings, Tracer, make_router, metrics_payload


@dataclass
class Principal:
    tenant_id: str | None
    key_id: str


KEYS = {"sk-test-acme": Principal("acme", "key-acme"), "sk-test-beta": Principal("beta", "key-beta"),
        "sk-test-admin": Principal(None, "key-admin")}


def principal_of(authorization: str | None) -> Principal:
    token = (authorization or "").removeprefix("Bearer ").strip()
    if token not in KEYS:
        raise AuthError("missing or unknown API key: send Authorization: Bearer <key>")
    return KEYS[token]


def require_key(authorization: str | None = Header(None)) -> Principal:
    return principal_of(authorization)


class ChatRequest(BaseModel):
    model: str = "gpt-oss-20b"
    messages: list[dict[str, Any]]
    stream: bool = False
    max_tokens: int = 64
    user: str | None = None
    session_id: str | None = None
    # Knobs that make the harness walk the pipeline's other paths.
    collection: str | None = None
    tool: str | None = None
    reasoning: str | None = None
    cached_tokens: int = 0
    fallback: bool = False
    fail: str | None = None  # "guard" refuses at guard.input; "engine" fails inside generation
    token_delay: float = 0.0


tracer: Tracer


@asynccontextmanager
async def lifespan(app: FastAPI):
    global tracer
    tracer = Tracer(ObserveSettings())
    app.include_router(make_router(tracer, auth=require_key, tenant_of=lambda p: p.tenant_id))
    yield
    tracer.close()
    w = tracer.writer
    if w is not None:  # one parseable line for the shutdown test
        print(f"OBSERVE-CLOSED accepted={w.accepted} written={w.written} dropped={w.dropped}", flush=True)


app = FastAPI(lifespan=lifespan)


@app.exception_handler(OssgateError)
async def ossgate_error(request: Request, exc: OssgateError) -> JSONResponse:
    return JSONResponse({"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                                   "code": exc.code}}, status_code=exc.status)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok", "pid": str(os.getpid())}


@app.get("/metrics")
def metrics() -> Response:
    body, content_type = metrics_payload()
    return Response(body, media_type=content_type)


def _words(messages: list[dict[str, Any]]) -> list[str]:
    return [w for m in messages if isinstance(m.get("content"), str) for w in m["content"].split()]


@app.post("/v1/chat/completions")
async def chat(body: ChatRequest, authorization: str | None = Header(None)) -> Response:
    trace = tracer.start(endpoint="/v1/chat/completions", model=body.model, stream=body.stream, user_id=body.user,
                         session_id=body.session_id, max_tokens=body.max_tokens)
    headers = {TRACE_HEADER: trace.trace_id}
    try:
        with trace.span("auth"):
            principal = principal_of(authorization)
            trace.set(tenant_id=principal.tenant_id, key_id=principal.key_id)
        with trace.span("guard.input", rules=2) as span:
            if body.fail == "guard":
                span.set(verdict="block")
                raise InvalidRequest("the input guard refused this request")
            span.set(verdict="allow")
        if body.collection:
            with trace.span("retrieval", collection=body.collection, top_k=3):
                await asyncio.sleep(0)
        prompt_words = _words(body.messages)
        trace.set(backend="native", fallback_from="upstream-vllm" if body.fallback else None)
        trace.capture(prompt=body.messages)
        trace.record(input_tokens=len(prompt_words), cached_tokens=body.cached_tokens)  # known before generation
    except OssgateError as e:
        trace.fail(e)
        tracer.finish(trace)
        return JSONResponse({"error": {"message": e.message, "type": e.type}}, status_code=e.status, headers=headers)

    user_words = _words([m for m in body.messages if m.get("role") == "user"][-1:])
    tokens = ([f"{w}" for w in user_words] * max(1, body.max_tokens))[: body.max_tokens]
    reasoning_tokens = body.reasoning.split() if body.reasoning else []
    METRICS.set_engine_stats(body.model, running=int(METRICS.in_flight._value.get()), waiting=0, kv_cache_usage=0.25)

    async def generate():
        generation = trace.start_span("generation", max_tokens=body.max_tokens)
        out: list[str] = []
        try:
            for i, tok in enumerate(reasoning_tokens + tokens):
                if body.token_delay:
                    await asyncio.sleep(body.token_delay)
                if i == 0:
                    trace.first_token()
                if i == len(reasoning_tokens) and body.tool:
                    with trace.span(f"tool.{body.tool}", parent=generation, tool=body.tool):
                        await asyncio.sleep(0.001)
                if body.fail == "engine" and i == 2:
                    raise RuntimeError("engine step failed")
                if i >= len(reasoning_tokens):
                    out.append(tok)
                    yield tok
            generation.end()
            trace.record(output_tokens=len(reasoning_tokens) + len(out), reasoning_tokens=len(reasoning_tokens),
                         finish_reason="length")
            with trace.span("guard.output"):
                pass
            trace.capture(response=" ".join(out), reasoning=body.reasoning)
        except RuntimeError as e:
            generation.end(e)
            trace.fail(e, http_status=500)
            raise
        finally:
            trace.capture(response=" ".join(out))
            tracer.finish(trace)

    if body.stream:
        async def sse():
            try:
                async for tok in generate():
                    yield f"data: {json.dumps({'choices': [{'delta': {'content': tok + ' '}}]})}\n\n"
            except RuntimeError as e:
                yield f"data: {json.dumps({'error': {'message': str(e)}})}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)
    try:
        text = " ".join([tok async for tok in generate()])
    except RuntimeError as e:
        return JSONResponse({"error": {"message": str(e), "type": "server_error"}}, status_code=500, headers=headers)
    return JSONResponse({"id": trace.trace_id, "object": "chat.completion", "model": body.model,
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "length"}],
                         "usage": {"prompt_tokens": trace.input_tokens, "completion_tokens": trace.output_tokens}},
                        headers=headers)
