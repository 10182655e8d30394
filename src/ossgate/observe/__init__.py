"""observe/: traces, metrics, cost and the dashboard for every request.

Integration surface (what the server wires in)
----------------------------------------------
Start-up (lifespan)::

    from ossgate.observe import ObserveSettings, Tracer, make_router, metrics_payload, TRACE_HEADER
    tracer = Tracer(ObserveSettings(**toml.get("observe", {})))   # or ObserveSettings() from OSSGATE_OBSERVE_* env
    app.include_router(make_router(tracer, auth=require_api_key, tenant_of=lambda p: p.tenant_id))
    ...
    tracer.close()            # on shutdown: writes every accepted trace, flushes OTLP, closes the store

Per request::

    trace = tracer.start(tenant_id=..., key_id=..., user_id=..., session_id=..., endpoint="/v1/chat/completions",
                         model=req.model, stream=req.stream, temperature=req.temperature)   # extra kw → attrs
    response.headers[TRACE_HEADER] = trace.trace_id                  # "x-ossgate-trace-id"
    with trace.span("auth"): ...                                     # also `async with`
    with trace.span("guard.input", rules=3) as span: span.set(verdict="allow")
    with trace.span("retrieval", collection="docs"): ...
    gen = trace.start_span("generation")                             # streaming: end it when the stream ends
    trace.first_token()                                              # at the first token (TTFT)
    with trace.span("tool.call", parent=gen, tool="browser.search"): ...   # parent: gen is no `with` block
    gen.end()                                                        # or gen.end(error=exc)
    trace.set(backend="native", fallback_from="vllm-1")              # fallback_from set ⇒ fallback taken
    trace.record(input_tokens=.., output_tokens=.., reasoning_tokens=.., cached_tokens=.., finish_reason="stop")
    trace.capture(prompt=messages, response=text, reasoning=analysis_text)  # policy applied off the request path
    trace.fail(exc)                                                  # on error (type name, message, exc.status)
    tracer.finish(trace)                                             # never blocks; exactly once, also on errors

Metrics: `METRICS` (one `prometheus_client` registry; engine code calls
`METRICS.set_engine_stats(model, running=, waiting=, kv_cache_usage=)`), and `/metrics` is
`body, content_type = metrics_payload()`. Register other packages' metrics in `METRICS.registry`.

CLI: `ossgate.observe.cli.app` (typer) → `ossgate traces list|show|export|stats|prune`.

Token accounting follows OpenAI's usage object: output tokens include reasoning tokens, input tokens
include cached tokens. Content capture (`capture = full | redacted | off`, `capture_reasoning`) applies
to the store and to OTLP export alike.
"""

from ossgate.observe.cost import Cost, PriceModel, ThroughputMeter
from ossgate.observe.metrics import METRICS, Metrics, metrics_payload
from ossgate.observe.routes import make_router
from ossgate.observe.settings import ModelPrice, ObserveSettings
from ossgate.observe.store import TraceFilter, TraceStore
from ossgate.observe.trace import Span, Trace
from ossgate.observe.tracer import TRACE_HEADER, Tracer

__all__ = ["METRICS", "TRACE_HEADER", "Cost", "Metrics", "ModelPrice", "ObserveSettings", "PriceModel", "Span",
           "ThroughputMeter", "Trace", "TraceFilter", "TraceStore", "Tracer", "make_router", "metrics_payload"]
