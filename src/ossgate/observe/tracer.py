"""Tracer: starts traces, finishes them (metrics, cost, hand-off to the writer), and answers reads.

One `Tracer` per process, created in the server's lifespan and closed there (`close()` flushes).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ossgate.errors import InvalidRequest, NotFound
from ossgate.observe.cost import PriceModel, ThroughputMeter
from ossgate.observe.metrics import METRICS, Metrics
from ossgate.observe.otlp import OtlpSpanExporter
from ossgate.observe.redact import redact
from ossgate.observe.settings import ObserveSettings
from ossgate.observe.store import TraceStore, decode_record
from ossgate.observe.trace import Trace
from ossgate.observe.writer import TraceWriter

log = logging.getLogger(__name__)

TRACE_HEADER = "x-ossgate-trace-id"
SCORE_KINDS = ("thumbs", "numeric", "categorical")


class Tracer:
    """The observe/ entry point for the request path.

    `settings.enabled = False` still hands out traces (so the trace id header and metrics work) but
    stores and exports nothing.
    """

    def __init__(self, settings: ObserveSettings | None = None, *, metrics: Metrics | None = None,
                 redactor: Callable[[str], str] = redact, store: TraceStore | None = None) -> None:
        self.settings = settings or ObserveSettings()
        self.metrics = metrics or METRICS
        self.redactor = redactor
        self.prices = PriceModel(self.settings.prices, ThroughputMeter(self.settings.throughput_window_s))
        self._pending: dict[str, Trace] = {}  # accepted by the writer, not yet in the store
        self.store: TraceStore | None = None
        self.writer: TraceWriter | None = None
        self.otlp: OtlpSpanExporter | None = None
        if not self.settings.enabled:
            return
        self.store = store or TraceStore(self.settings.store_url)
        if self.settings.otlp_endpoint:
            self.otlp = OtlpSpanExporter(self.settings.otlp_endpoint, headers=self.settings.otlp_headers,
                                         service_name=self.settings.service_name)
        s = self.settings
        self.writer = TraceWriter(
            self.store, to_record=self._record_of, metrics=self.metrics, queue_size=s.queue_size,
            batch_size=s.batch_size, flush_interval_s=s.flush_interval_s, after_write=self._after_write,
            prune=self.prune, prune_interval_s=s.prune_interval_s)

    # -- request path --

    def start(self, **fields: Any) -> Trace:
        """Begin a request's trace. Keywords: tenant_id, key_id, user_id, session_id, endpoint, model,
        backend, stream, plus any free-form attributes (kept on the trace)."""
        self.metrics.in_flight.inc()
        return Trace(**fields)

    def finish(self, trace: Trace, *, status: str | None = None, http_status: int | None = None) -> bool:
        """End the trace: close open spans, compute TPOT and cost, observe metrics, queue it for writing.

        Never blocks; returns False when the trace was dropped (queue full, tracer closed, or disabled).
        Call exactly once per trace, also on failures (after `trace.fail(...)`)."""
        if trace.latency_s is not None:
            raise InvalidRequest(f"trace {trace.trace_id} was already finished")
        trace.latency_s = trace.elapsed_ms() / 1000.0
        for span in trace.spans:
            span.end()  # a stage that never closed (e.g. an aborted stream) ends with the request
        if status is not None:
            trace.status = status
        if http_status is not None:
            trace.http_status = http_status
        elif trace.http_status is None:
            trace.http_status = 200 if trace.status == "ok" else 500
        cost = self.prices.cost(trace.model, trace.input_tokens, trace.output_tokens, trace.cached_tokens)
        trace.cost_tokens_usd, trace.cost_hardware_usd = cost.tokens_usd, cost.hardware_usd
        self.metrics.in_flight.dec()
        self.metrics.observe_request(
            model=trace.model, status=trace.status, latency_s=trace.latency_s, ttft_s=trace.ttft_s,
            tpot_s=trace.tpot_s, input_tokens=trace.input_tokens, output_tokens=trace.output_tokens,
            reasoning_tokens=trace.reasoning_tokens, cached_tokens=trace.cached_tokens, error_type=trace.error_type,
            fallback_from=trace.fallback_from, backend=trace.backend, cost_tokens_usd=cost.tokens_usd,
            cost_hardware_usd=cost.hardware_usd)
        if self.writer is None:
            return False
        self._pending[trace.trace_id] = trace
        if self.writer.submit(trace):
            return True
        self._pending.pop(trace.trace_id, None)
        return False

    # -- writer thread --

    def _record_of(self, trace: Trace) -> dict[str, Any]:
        s = self.settings
        return trace.to_record(s.capture, s.capture_reasoning, s.max_content_chars, self.redactor)

    def _after_write(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._pending.pop(record["trace_id"], None)
        if self.otlp is not None:
            for record in records:
                self.otlp.export(record)

    def prune(self) -> int:
        """Apply the retention policy now (the writer also does this every `prune_interval_s`)."""
        if self.store is None:
            return 0
        return self.store.prune(max_age_days=self.settings.retention_days, max_rows=self.settings.retention_rows)

    # -- reads and feedback (API / CLI) --

    def require_store(self) -> TraceStore:
        if self.store is None:
            raise NotFound("tracing is disabled (observe.enabled = false): no traces are stored")
        return self.store

    def get(self, trace_id: str) -> dict[str, Any]:
        """A trace, also one finished moments ago and still waiting in the writer's queue."""
        store = self.require_store()
        pending = self._pending.get(trace_id)
        if pending is not None:
            record = decode_record(self._record_of(pending))
            record["scores"] = store.scores(trace_id)
            return record
        return store.get(trace_id)

    def add_score(self, trace_id: str, *, name: str, kind: str, value: float | bool | str | None = None,
                  label: str | None = None, comment: str | None = None, author: str | None = None) -> dict[str, Any]:
        """Attach feedback to a trace. thumbs: value up/down/true/false/1/0; numeric: a number;
        categorical: a label. NotFound for an unknown trace id."""
        store = self.require_store()
        if kind not in SCORE_KINDS:
            raise InvalidRequest(f"score kind {kind!r} is not one of {', '.join(SCORE_KINDS)}", param="kind")
        number: float | None
        if kind == "thumbs":
            thumbs = {"up": 1.0, "down": 0.0, True: 1.0, False: 0.0, "1": 1.0, "0": 0.0}  # 1 == True
            key = value.lower() if isinstance(value, str) else value
            if key not in thumbs:
                raise InvalidRequest(f"a thumbs score takes value up/down (or true/false, 1/0), not {value!r}",
                                     param="value")
            number = thumbs[key]
            label = label or ("up" if number else "down")
        elif kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequest(f"a numeric score needs a number as value, not {value!r}", param="value")
            number = float(value)
        else:
            label = label if label is not None else (value if isinstance(value, str) else None)
            if not label:
                raise InvalidRequest("a categorical score needs a label (e.g. \"helpful\")", param="label")
            number = None
        if not name or len(name) > 100:
            raise InvalidRequest("score name must be 1..100 characters", param="name")
        if trace_id not in self._pending and not store.exists(trace_id):
            raise NotFound(f"no trace with id {trace_id!r}")
        return store.add_score(trace_id, name=name, kind=kind, value=number, label=label, comment=comment,
                               author=author)

    # -- lifecycle --

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every accepted trace is written (tests, CLI, benchmarks)."""
        return self.writer.flush(timeout) if self.writer is not None else True

    def close(self, timeout: float | None = 30.0) -> None:
        """Graceful shutdown: write every accepted trace, flush the OTLP exporter, close the store."""
        started = time.monotonic()
        if self.writer is not None:
            self.writer.close(timeout)
            log.info("trace writer closed: %s accepted, %s written, %s dropped in %.2fs", self.writer.accepted,
                     self.writer.written, self.writer.dropped, time.monotonic() - started)
        if self.otlp is not None:
            self.otlp.shutdown()
        if self.store is not None:
            self.store.close()

    def stats_json(self) -> str:
        """Writer counters as JSON (handy in logs and tests)."""
        w = self.writer
        return json.dumps({"accepted": w.accepted if w else 0, "written": w.written if w else 0,
                           "dropped": w.dropped if w else 0})
