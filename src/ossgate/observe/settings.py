"""Observability settings: where traces go, what content they keep, how long, and what a token costs.

Built from `OSSGATE_OBSERVE_*` environment variables (nested with `__`, e.g.
`OSSGATE_OBSERVE_PRICES__gpt-oss-20b__OUTPUT_USD_PER_MTOK=0.6`) or from the `[observe]` table of
ossgate.toml passed as keyword arguments. Bad values are refused at start-up, not at the first request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ossgate.vocab import data_dir

CaptureMode = Literal["full", "redacted", "off"]


def default_store_url() -> str:
    return f"sqlite:///{data_dir() / 'traces.db'}"


class ModelPrice(BaseModel):
    """What one model costs: per-token list prices and/or the hardware it runs on.

    Token prices are USD per million tokens. `cached_tokens` are a subset of `input_tokens` (as in
    OpenAI's usage object) billed at `cached_input_usd_per_mtok`; reasoning tokens are part of the
    output tokens and billed as output.

    Hardware cost is the machine's hourly price divided by its token throughput: a request's share is
    `(gpu_hour_usd * gpus + server_hour_usd) / 3600 * request_tokens / throughput_tokens_per_s`.
    With `throughput_tokens_per_s` unset the throughput is measured live from finished requests, so
    idle hardware shows up as a higher cost per token (which is what it really costs).
    """

    input_usd_per_mtok: float = Field(0.0, ge=0)
    output_usd_per_mtok: float = Field(0.0, ge=0)
    cached_input_usd_per_mtok: float | None = Field(None, ge=0, description="None: same as input")
    gpu_hour_usd: float = Field(0.0, ge=0)
    gpus: int = Field(1, ge=0)
    server_hour_usd: float = Field(0.0, ge=0)
    throughput_tokens_per_s: float | None = Field(None, gt=0, description="None: measured live")

    @property
    def hourly_usd(self) -> float:
        return self.gpu_hour_usd * self.gpus + self.server_hour_usd


class ObserveSettings(BaseSettings):
    """Everything observe/ needs; every default works offline on one machine."""

    model_config = SettingsConfigDict(env_prefix="OSSGATE_OBSERVE_", env_nested_delimiter="__", extra="forbid")

    enabled: bool = Field(True, description="False: no trace is stored or exported (metrics still count)")
    store_url: str = Field(default_factory=default_store_url, description="sqlite:///path or postgresql://…")
    capture: CaptureMode = Field("redacted", description="prompt/response content: full, redacted (PII masked), off")
    capture_reasoning: bool = Field(False, description="keep the model's reasoning text (subject to `capture`)")
    max_content_chars: int = Field(32_000, ge=0, description="longer prompt/response/reasoning text is truncated")
    retention_days: float | None = Field(30.0, gt=0, description="prune traces older than this; None keeps all")
    retention_rows: int | None = Field(1_000_000, gt=0, description="keep at most this many traces; None: no cap")
    prune_interval_s: float = Field(300.0, gt=0, description="how often the writer applies retention")
    queue_size: int = Field(10_000, ge=1, description="finished traces waiting for the writer; beyond: dropped+counted")
    batch_size: int = Field(256, ge=1, description="traces per store transaction")
    flush_interval_s: float = Field(0.5, gt=0, description="longest a finished trace waits before it is written")
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP collector base URL, e.g. http://127.0.0.1:4318")
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    service_name: str = "ossgate"
    prices: dict[str, ModelPrice] = Field(default_factory=dict, description="per model name; '*' is the fallback")
    throughput_window_s: float = Field(300.0, gt=0, description="window of the live throughput measurement")

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(f"store_url {v!r} must start with sqlite:/// (a file path) or postgresql://")
        return v

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_endpoint(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"otlp_endpoint {v!r} must be an http(s) URL of an OTLP/HTTP receiver")
        return v

    @model_validator(mode="after")
    def _batch_fits_queue(self) -> ObserveSettings:
        if self.batch_size > self.queue_size:
            raise ValueError(f"batch_size {self.batch_size} is larger than queue_size {self.queue_size}")
        return self
