"""One trace per request: a root plus a span per pipeline stage, and the request's facts (ids, model,
tokens, timings, cost, captured content).

Times are taken with `time.perf_counter()` and stored as milliseconds from the trace's start; the
wall-clock start (`started_at`, epoch seconds) anchors them. A `Trace` belongs to one request and is
not shared between threads until `Tracer.finish` hands it to the writer, after which it is read-only.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

# The innermost span opened with `with`/`async with`, so nested stages get the right parent.
_current_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar("ossgate_current_span", default=None)

# Log-scale buckets for latency percentiles computed in SQL by GROUP BY (same SQL on SQLite and
# PostgreSQL, which disagree on percentile functions): bucket i holds values up to BASE**i ms,
# so a percentile read from the histogram is within ~5% of the exact one.
BUCKET_BASE = 1.1


def latency_bucket(seconds: float | None) -> int | None:
    if seconds is None:
        return None
    ms = seconds * 1000.0
    return 0 if ms <= 1.0 else math.ceil(math.log(ms) / math.log(BUCKET_BASE))


def bucket_value_s(bucket: int) -> float:
    """A representative value (geometric middle) of a latency bucket, in seconds."""
    return BUCKET_BASE ** (bucket - 0.5) / 1000.0 if bucket > 0 else 0.001


def new_trace_id() -> str:
    """32 hex digits: a W3C / OpenTelemetry trace id, so exported spans keep the id the client saw."""
    return uuid.uuid4().hex


def new_span_id() -> str:
    return os.urandom(8).hex()


class Span:
    """A timed stage of a trace. Use `with trace.span(...)`, `async with`, or `start_span()`/`end()`."""

    __slots__ = ("trace", "span_id", "parent_id", "name", "start_ms", "end_ms", "attrs", "status", "error_type",
                 "_token")

    def __init__(self, trace: Trace, name: str, parent_id: str | None, attrs: dict[str, Any]) -> None:
        self.trace = trace
        self.span_id = new_span_id()
        self.parent_id = parent_id
        self.name = name
        self.start_ms = trace.elapsed_ms()
        self.end_ms: float | None = None
        self.attrs = attrs
        self.status = "ok"
        self.error_type: str | None = None
        self._token: contextvars.Token | None = None

    def set(self, **attrs: Any) -> Span:
        self.attrs.update(attrs)
        return self

    def end(self, error: BaseException | str | None = None) -> None:
        """Close the span (idempotent); an error marks it failed with the error's type name."""
        if self.end_ms is not None:
            return
        self.end_ms = self.trace.elapsed_ms()
        if error is not None:
            self.status = "error"
            self.error_type = error if isinstance(error, str) else type(error).__name__

    def __enter__(self) -> Span:
        self._token = _current_span.set(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._token is not None:
            _current_span.reset(self._token)
            self._token = None
        self.end(exc)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self.__exit__(exc_type, exc, tb)

    def to_dict(self) -> dict[str, Any]:
        return {
            "span_id": self.span_id, "parent_id": self.parent_id, "name": self.name,
            "start_ms": round(self.start_ms, 3), "end_ms": None if self.end_ms is None else round(self.end_ms, 3),
            "status": self.status, "error_type": self.error_type, "attrs": self.attrs,
        }


# Request facts a caller may set with `Trace.set`; anything else goes into `attrs`.
_FIELDS = frozenset({"tenant_id", "key_id", "user_id", "session_id", "endpoint", "model", "backend",
                     "fallback_from", "stream", "finish_reason"})


class Trace:
    """The record of one request. Create with `Tracer.start`, close with `Tracer.finish`."""

    def __init__(self, *, trace_id: str | None = None, **fields: Any) -> None:
        self.trace_id = trace_id or new_trace_id()
        self.root_span_id = new_span_id()
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        self.tenant_id = self.key_id = self.user_id = self.session_id = None
        self.endpoint = self.model = self.backend = self.fallback_from = self.finish_reason = None
        self.stream = False
        self.attrs: dict[str, Any] = {}
        self.spans: list[Span] = []
        self.input_tokens = self.output_tokens = self.reasoning_tokens = self.cached_tokens = 0
        self.ttft_s: float | None = None
        self.latency_s: float | None = None
        self.status = "ok"
        self.http_status: int | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.prompt: Any = None
        self.response: str | None = None
        self.reasoning: str | None = None
        self.cost_tokens_usd = 0.0
        self.cost_hardware_usd = 0.0
        self.set(**fields)

    # -- building the trace on the request path (cheap: no I/O, no redaction) --

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000.0

    def set(self, **fields: Any) -> Trace:
        """Set request facts (tenant_id, key_id, user_id, session_id, endpoint, model, backend,
        fallback_from, stream, finish_reason); other keywords are kept as free-form attributes."""
        for key, value in fields.items():
            if key in _FIELDS:
                setattr(self, key, value)
            else:
                self.attrs[key] = value
        return self

    def span(self, name: str, *, parent: Span | None = None, **attrs: Any) -> Span:
        """A span for a `with` / `async with` block. Its parent is `parent` if given, else the enclosing
        `with` span of this trace, else the request's root span."""
        return self.start_span(name, parent=parent, **attrs)

    def start_span(self, name: str, *, parent: Span | None = None, **attrs: Any) -> Span:
        """Open a span now; call `span.end()` later (for stages that outlive a block, e.g. a stream).
        Pass such a span as `parent=` to the spans opened inside it (tool calls during generation)."""
        if parent is None:
            current = _current_span.get()
            parent = current if current is not None and current.trace is self else None
        span = Span(self, name, parent.span_id if parent is not None else self.root_span_id, attrs)
        self.spans.append(span)
        return span

    def first_token(self) -> None:
        """Mark time to first token (only the first call counts)."""
        if self.ttft_s is None:
            self.ttft_s = self.elapsed_ms() / 1000.0

    def record(self, *, input_tokens: int | None = None, output_tokens: int | None = None,
               reasoning_tokens: int | None = None, cached_tokens: int | None = None,
               ttft_s: float | None = None, finish_reason: str | None = None) -> Trace:
        """Token counts (output includes reasoning; input includes cached, as in OpenAI's usage) and
        timings measured elsewhere. Arguments left as None keep their current value."""
        if input_tokens is not None:
            self.input_tokens = input_tokens
        if output_tokens is not None:
            self.output_tokens = output_tokens
        if reasoning_tokens is not None:
            self.reasoning_tokens = reasoning_tokens
        if cached_tokens is not None:
            self.cached_tokens = cached_tokens
        if ttft_s is not None:
            self.ttft_s = ttft_s
        if finish_reason is not None:
            self.finish_reason = finish_reason
        return self

    def capture(self, *, prompt: Any = None, response: str | None = None, reasoning: str | None = None) -> Trace:
        """Hand over content; the capture policy (full / redacted / off) is applied off the request path.

        `prompt` may be a string or a list of chat messages ({"role", "content"} dicts)."""
        if prompt is not None:
            self.prompt = prompt
        if response is not None:
            self.response = response
        if reasoning is not None:
            self.reasoning = reasoning
        return self

    def fail(self, error: BaseException | str, message: str | None = None, http_status: int | None = None) -> Trace:
        """Mark the request failed; `error` is an exception (its type name is kept) or an error type."""
        self.status = "error"
        self.error_type = error if isinstance(error, str) else type(error).__name__
        self.error_message = message if message is not None else (None if isinstance(error, str) else str(error))
        if http_status is not None:
            self.http_status = http_status
        elif not isinstance(error, str):
            self.http_status = getattr(error, "status", None)
        return self

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first one."""
        if self.ttft_s is None or self.latency_s is None or self.output_tokens < 2:
            return None
        return max(0.0, self.latency_s - self.ttft_s) / (self.output_tokens - 1)

    # -- turning it into a store row (runs in the writer thread) --

    def to_record(self, capture: str, capture_reasoning: bool, max_chars: int,
                  redactor: Callable[[str], str]) -> dict[str, Any]:
        """The row the store writes, with the content policy applied."""
        def policy(text: str | None) -> str | None:
            if text is None or capture == "off":
                return None
            text = text[:max_chars]
            return redactor(text) if capture == "redacted" else text

        prompt = self.prompt
        if isinstance(prompt, list):
            messages = [{**m, "content": policy(m.get("content")) if isinstance(m.get("content"), str) else None}
                        for m in prompt if isinstance(m, dict)]
            prompt_text = None if capture == "off" else json.dumps(messages, ensure_ascii=False)
            users = [m["content"] for m in messages if m.get("role") == "user" and m.get("content")]
            preview = users[-1] if users else None
        else:
            prompt_text = policy(prompt if prompt is None else str(prompt))
            preview = prompt_text
        latency = self.latency_s if self.latency_s is not None else self.elapsed_ms() / 1000.0
        spans = [{"span_id": self.root_span_id, "parent_id": None, "name": "request", "start_ms": 0.0,
                  "end_ms": round(latency * 1000.0, 3), "status": self.status, "error_type": self.error_type,
                  "attrs": {}}]
        spans += [s.to_dict() for s in self.spans]
        started_ms = int(self.started_at * 1000)
        return {
            "trace_id": self.trace_id, "root_span_id": self.root_span_id,
            "started_ms": started_ms, "ended_ms": started_ms + int(latency * 1000),
            "tenant_id": self.tenant_id, "key_id": self.key_id, "user_id": self.user_id,
            "session_id": self.session_id, "endpoint": self.endpoint, "model": self.model, "backend": self.backend,
            "fallback": int(self.fallback_from is not None), "fallback_from": self.fallback_from,
            "stream": int(bool(self.stream)), "status": self.status, "http_status": self.http_status,
            "error_type": self.error_type, "error_message": self.error_message, "finish_reason": self.finish_reason,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens, "cached_tokens": self.cached_tokens,
            "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "latency_s": latency,
            "latency_bucket": latency_bucket(latency), "ttft_bucket": latency_bucket(self.ttft_s),
            "cost_tokens_usd": self.cost_tokens_usd, "cost_hardware_usd": self.cost_hardware_usd,
            "capture": capture, "preview": None if preview is None else preview[:200],
            "prompt": prompt_text, "response": policy(self.response),
            "reasoning": policy(self.reasoning) if capture_reasoning else None,
            "attrs": json.dumps(self.attrs, ensure_ascii=False, default=str),
            "spans": json.dumps(spans, ensure_ascii=False, default=str),
        }
