"""Prometheus metrics: one registry, the metric objects, and helpers that feed them.

Names follow vLLM's (`ossgate:` in place of `vllm:` — `ossgate:time_to_first_token_seconds`,
`ossgate:num_requests_waiting`, label `model_name`) so existing vLLM dashboards work with a prefix swap,
and the OpenTelemetry GenAI semantic conventions for the `gen_ai_*` metrics (the names an OTel
Prometheus exporter would produce: `gen_ai_server_request_duration_seconds`, `gen_ai_client_token_usage`
with `gen_ai_request_model` / `gen_ai_token_type` labels).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# vLLM's request-latency buckets (seconds).
_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                    240.0, 480.0, 960.0, 1920.0, 7680.0)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)
# OTel GenAI recommended buckets.
_GENAI_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class Metrics:
    """All observe/ metrics in one registry. Create one per process (`METRICS` below) — or a fresh one
    in a test — and expose it with `payload()`. Other packages may register their own metrics in
    `metrics.registry` so /metrics stays one page."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("ossgate:requests", "Finished requests by model and status (ok/error).",
                                ["model_name", "status"], registry=r)
        self.e2e_latency = Histogram("ossgate:e2e_request_latency_seconds", "End-to-end request latency.",
                                     ["model_name"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("ossgate:time_to_first_token_seconds", "Time to first token.", ["model_name"],
                              buckets=_TTFT_BUCKETS, registry=r)
        self.itl = Histogram("ossgate:inter_token_latency_seconds",
                             "Inter-token latency: a request's mean time per output token after the first.",
                             ["model_name"], buckets=_ITL_BUCKETS, registry=r)
        self.tokens = Counter("ossgate:tokens", "Tokens by type: input, output, reasoning (part of output), "
                              "cached (part of input).", ["model_name", "token_type"], registry=r)
        self.fallbacks = Counter("ossgate:fallbacks", "Requests served by a fallback backend.",
                                 ["model_name", "from_backend", "to_backend"], registry=r)
        self.cost = Counter("ossgate:cost_usd", "Cost in USD by kind (tokens: list price, hardware: machine share).",
                            ["model_name", "kind"], registry=r)
        self.in_flight = Gauge("ossgate:num_requests_in_flight", "HTTP requests being traced right now.",
                               registry=r)
        # Fed by the engine's stats (set_engine_stats), as vLLM's scheduler gauges.
        self.running = Gauge("ossgate:num_requests_running", "Requests in the engine's running batch.",
                             ["model_name"], registry=r)
        self.waiting = Gauge("ossgate:num_requests_waiting", "Requests waiting for admission to the engine.",
                             ["model_name"], registry=r)
        self.kv_usage = Gauge("ossgate:kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0..1).",
                              ["model_name"], registry=r)
        # The trace pipeline itself.
        self.trace_drops = Counter("ossgate:trace_queue_dropped", "Finished traces dropped instead of written "
                                   "(full: queue full; closed: after shutdown began).", ["reason"], registry=r)
        self.traces_written = Counter("ossgate:traces_written", "Traces written to the trace store.", registry=r)
        self.trace_write_errors = Counter("ossgate:trace_write_errors", "Trace batches the store refused "
                                          "after retries (their traces are lost).", registry=r)
        self.trace_queue_depth = Gauge("ossgate:trace_queue_depth", "Finished traces waiting for the writer.",
                                       registry=r)
        # OpenTelemetry GenAI semantic conventions.
        self.genai_duration = Histogram("gen_ai_server_request_duration_seconds", "GenAI server request duration.",
                                        ["gen_ai_operation_name", "gen_ai_request_model", "error_type"],
                                        buckets=_GENAI_DURATION_BUCKETS, registry=r)
        self.genai_ttft = Histogram("gen_ai_server_time_to_first_token_seconds", "GenAI time to first token.",
                                    ["gen_ai_operation_name", "gen_ai_request_model"],
                                    buckets=_GENAI_DURATION_BUCKETS, registry=r)
        self.genai_tpot = Histogram("gen_ai_server_time_per_output_token_seconds",
                                    "GenAI time per output token after the first.",
                                    ["gen_ai_operation_name", "gen_ai_request_model"],
                                    buckets=_ITL_BUCKETS, registry=r)
        self.genai_tokens = Histogram("gen_ai_client_token_usage", "GenAI tokens used per request.",
                                      ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_token_type"],
                                      buckets=_GENAI_TOKEN_BUCKETS, registry=r)

    def observe_request(self, *, model: str | None, status: str, latency_s: float, ttft_s: float | None,
                        tpot_s: float | None, input_tokens: int, output_tokens: int, reasoning_tokens: int,
                        cached_tokens: int, error_type: str | None = None, fallback_from: str | None = None,
                        backend: str | None = None, cost_tokens_usd: float = 0.0, cost_hardware_usd: float = 0.0,
                        operation: str = "chat") -> None:
        """Record one finished request (Tracer.finish calls this; call it yourself only without a Tracer)."""
        m = model or "unknown"
        self.requests.labels(m, status).inc()
        self.e2e_latency.labels(m).observe(latency_s)
        self.genai_duration.labels(operation, m, error_type or "").observe(latency_s)
        if ttft_s is not None:
            self.ttft.labels(m).observe(ttft_s)
            self.genai_ttft.labels(operation, m).observe(ttft_s)
        if tpot_s is not None:
            self.itl.labels(m).observe(tpot_s)
            self.genai_tpot.labels(operation, m).observe(tpot_s)
        for token_type, n in (("input", input_tokens), ("output", output_tokens),
                              ("reasoning", reasoning_tokens), ("cached", cached_tokens)):
            if n:
                self.tokens.labels(m, token_type).inc(n)
        if input_tokens:
            self.genai_tokens.labels(operation, m, "input").observe(input_tokens)
        if output_tokens:
            self.genai_tokens.labels(operation, m, "output").observe(output_tokens)
        if fallback_from is not None:
            self.fallbacks.labels(m, fallback_from, backend or "unknown").inc()
        if cost_tokens_usd:
            self.cost.labels(m, "tokens").inc(cost_tokens_usd)
        if cost_hardware_usd:
            self.cost.labels(m, "hardware").inc(cost_hardware_usd)

    def set_engine_stats(self, model: str, *, running: int, waiting: int, kv_cache_usage: float) -> None:
        """Scheduler gauges, fed by the engine/backend (e.g. after each step or on each scrape)."""
        self.running.labels(model).set(running)
        self.waiting.labels(model).set(waiting)
        self.kv_usage.labels(model).set(kv_cache_usage)

    def payload(self) -> tuple[bytes, str]:
        """The /metrics response body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


METRICS = Metrics()


def metrics_payload(metrics: Metrics = METRICS) -> tuple[bytes, str]:
    """The /metrics body and content type for the process-wide registry."""
    return metrics.payload()
