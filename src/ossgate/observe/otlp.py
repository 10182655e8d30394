"""OpenTelemetry export: finished traces as OTLP/HTTP spans with `gen_ai.*` attributes.

Our traces are already complete when they leave the request, so instead of driving the SDK's live
tracer we build `ReadableSpan`s with the recorded ids and times and hand them to the SDK's
`BatchSpanProcessor` (its own thread and retry policy) in front of the OTLP/HTTP protobuf exporter.
The trace id is the one returned in `x-ossgate-trace-id`, so a trace can be found in both places.

Attribute names follow the GenAI semantic conventions (gen_ai.operation.name, gen_ai.request.model,
gen_ai.usage.input_tokens, …); ossgate-specific facts are under `ossgate.*`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)


def _attrs(values: dict[str, Any]) -> dict[str, Any]:
    """OTel attribute values must be str/bool/int/float (or lists of them); drop None, JSON the rest."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str | bool | int | float) for v in value):
            out[key] = tuple(value)
        else:
            out[key] = json.dumps(value, default=str)
    return out


class OtlpSpanExporter:
    """Exports trace records (as written to the store) to an OTLP/HTTP receiver."""

    def __init__(self, endpoint: str, *, headers: dict[str, str] | None = None, service_name: str = "ossgate") -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"  # OTEL_EXPORTER_OTLP_ENDPOINT semantics: a base URL
        self.url = url
        self._processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=url, headers=headers or {}))
        self._resource = Resource.create({"service.name": service_name})
        self._scope = InstrumentationScope("ossgate.observe")

    def export(self, record: dict[str, Any]) -> None:
        """Queue a trace's spans for export (non-blocking; the SDK drops when its own queue is full)."""
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        trace_id = int(record["trace_id"], 16)
        start_ns = record["started_ms"] * 1_000_000
        spans = record["spans"]
        if isinstance(spans, str):
            spans = json.loads(spans)

        def ctx(span_id: str) -> SpanContext:
            return SpanContext(trace_id, int(span_id, 16), is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

        model = record.get("model")
        for span in spans:
            is_root = span["parent_id"] is None
            name, kind = span["name"], SpanKind.INTERNAL
            attrs: dict[str, Any] = {f"ossgate.{k}": v for k, v in (span.get("attrs") or {}).items()}
            if is_root:
                kind = SpanKind.SERVER
                name = f"chat {model}" if model else "request"
                attrs.update(self._root_attrs(record))
            elif span["name"] == "generation":
                kind = SpanKind.CLIENT
                name = f"chat {model}" if model else "generation"
                attrs.update({"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                              "gen_ai.response.model": model, "gen_ai.provider.name": record.get("backend"),
                              "gen_ai.usage.input_tokens": record.get("input_tokens"),
                              "gen_ai.usage.output_tokens": record.get("output_tokens")})
            elif span["name"].startswith("tool"):
                tool = (span.get("attrs") or {}).get("tool") or span["name"].partition(".")[2] or "tool"
                name = f"execute_tool {tool}"
                attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool})
            status = Status(StatusCode.ERROR, span.get("error_type")) if span["status"] == "error" else Status(
                StatusCode.OK)
            end_ms = span["end_ms"] if span["end_ms"] is not None else span["start_ms"]
            self._processor.on_end(ReadableSpan(
                name=name, context=ctx(span["span_id"]),
                parent=None if is_root else ctx(span["parent_id"]),
                resource=self._resource, attributes=_attrs(attrs), kind=kind, status=status,
                start_time=start_ns + int(span["start_ms"] * 1e6), end_time=start_ns + int(end_ms * 1e6),
                instrumentation_scope=self._scope,
            ))

    @staticmethod
    def _root_attrs(r: dict[str, Any]) -> dict[str, Any]:
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": r.get("model"),
            "gen_ai.response.model": r.get("model"),
            "gen_ai.provider.name": r.get("backend"),
            "gen_ai.conversation.id": r.get("session_id"),
            "gen_ai.response.finish_reasons": [r["finish_reason"]] if r.get("finish_reason") else None,
            "gen_ai.usage.input_tokens": r.get("input_tokens"),
            "gen_ai.usage.output_tokens": r.get("output_tokens"),
            "gen_ai.usage.reasoning_tokens": r.get("reasoning_tokens"),
            "gen_ai.usage.cache_read.input_tokens": r.get("cached_tokens"),
            "gen_ai.server.time_to_first_token": r.get("ttft_s"),
            "gen_ai.server.time_per_output_token": r.get("tpot_s"),
            "error.type": r.get("error_type"),
            "http.response.status_code": r.get("http_status"),
            "ossgate.tenant_id": r.get("tenant_id"),
            "ossgate.key_id": r.get("key_id"),
            "ossgate.user_id": r.get("user_id"),
            "ossgate.endpoint": r.get("endpoint"),
            "ossgate.fallback_from": r.get("fallback_from"),
            "ossgate.cost.tokens_usd": r.get("cost_tokens_usd"),
            "ossgate.cost.hardware_usd": r.get("cost_hardware_usd"),
        }
        # Content only as the capture policy left it (already redacted or absent).
        if r.get("prompt") is not None:
            attrs["gen_ai.input.messages"] = r["prompt"] if isinstance(r["prompt"], str) else json.dumps(r["prompt"])
        if r.get("response") is not None:
            attrs["gen_ai.output.messages"] = json.dumps([{"role": "assistant", "parts": [
                {"type": "text", "content": r["response"]}]}], ensure_ascii=False)
        if r.get("reasoning") is not None:
            attrs["ossgate.reasoning"] = r["reasoning"]
        return attrs

    def shutdown(self) -> None:
        """Send what is queued and stop the exporter thread."""
        self._processor.shutdown()
