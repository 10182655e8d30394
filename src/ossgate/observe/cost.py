"""Cost per transaction: list prices per token, and hardware cost per token from measured throughput.

Both figures are computed for every finished request and stored on its trace (`cost_tokens_usd`,
`cost_hardware_usd`), so per-key and per-day totals are plain sums in the store.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

from ossgate.observe.settings import ModelPrice


@dataclass(frozen=True)
class Cost:
    tokens_usd: float  # list price of the tokens
    hardware_usd: float  # this request's share of the machine's hourly cost


class ThroughputMeter:
    """Tokens per second processed by this process, over a sliding window of finished requests.

    Counts input + output tokens of each finished request at its finish time. Before a full window
    has passed the rate is taken over the time since the first request (at least one second), so a
    fresh server does not report an absurd rate from its first request.
    """

    def __init__(self, window_s: float = 300.0, clock=time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._sum = 0
        self._first: float | None = None
        self._lock = threading.Lock()

    def add(self, tokens: int) -> None:
        now = self._clock()
        with self._lock:
            if self._first is None:
                self._first = now
            self._events.append((now, tokens))
            self._sum += tokens
            self._expire(now)

    def tokens_per_s(self) -> float | None:
        """None until something has been measured."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            if self._first is None or self._sum == 0:
                return None
            span = max(1.0, min(self.window_s, now - self._first))
            return self._sum / span

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        while self._events and self._events[0][0] < cutoff:
            self._sum -= self._events.popleft()[1]


class PriceModel:
    """Prices per model name (the key '*' is the fallback); unknown models cost 0."""

    def __init__(self, prices: dict[str, ModelPrice], meter: ThroughputMeter | None = None) -> None:
        self.prices = dict(prices)
        self.meter = meter or ThroughputMeter()

    def price_for(self, model: str | None) -> ModelPrice | None:
        return self.prices.get(model or "") or self.prices.get("*")

    def cost(self, model: str | None, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> Cost:
        """Cost of one request; also feeds the live throughput meter with its tokens."""
        tokens = input_tokens + output_tokens
        self.meter.add(tokens)
        price = self.price_for(model)
        if price is None:
            return Cost(0.0, 0.0)
        cached = min(cached_tokens, input_tokens)
        cached_rate = price.cached_input_usd_per_mtok
        if cached_rate is None:
            cached_rate = price.input_usd_per_mtok
        tokens_usd = (
            (input_tokens - cached) * price.input_usd_per_mtok
            + cached * cached_rate
            + output_tokens * price.output_usd_per_mtok
        ) / 1e6
        hardware_usd = 0.0
        if price.hourly_usd > 0 and tokens > 0:
            throughput = price.throughput_tokens_per_s or self.meter.tokens_per_s()
            if throughput:
                hardware_usd = price.hourly_usd / 3600.0 * tokens / throughput
        return Cost(tokens_usd, hardware_usd)
