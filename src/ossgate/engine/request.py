"""A request's state inside the engine (after vLLM v1's `Request`)."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ossgate.engine.sampling import Sample, SamplingParams


class Status(enum.IntEnum):
    """Ordered: everything above RUNNING is finished."""

    WAITING = 0
    RUNNING = 1
    FINISHED_STOPPED = 2  # a stop token
    FINISHED_LENGTH = 3  # max_tokens or the context limit
    FINISHED_ABORTED = 4  # cancelled by the client
    FINISHED_ERROR = 5

    @property
    def finished(self) -> bool:
        return self > Status.RUNNING


FINISH_REASONS = {
    Status.FINISHED_STOPPED: "stop",
    Status.FINISHED_LENGTH: "length",
    Status.FINISHED_ABORTED: "abort",
    Status.FINISHED_ERROR: "error",
}


@dataclass
class TokenEvent:
    """One generated token as the engine hands it out."""

    request_id: str
    token: int
    logprob: float
    top_logprobs: list[tuple[int, float]]  # empty unless the request asked for logprobs
    time: float  # time.perf_counter() when the token was sampled
    finish_reason: str | None = None  # set on the last token: stop | length | abort | error


@dataclass
class Request:
    request_id: str
    prompt: list[int]
    params: SamplingParams
    on_token: Callable[[TokenEvent], None] | None = None  # called from the engine thread
    arrival: float = field(default_factory=time.perf_counter)
    status: Status = Status.WAITING
    output: list[int] = field(default_factory=list)
    num_computed: int = 0  # tokens whose K/V are in the cache; catches up with len(all_tokens)
    num_cached_prefix: int = 0  # tokens reused from the prefix cache instead of computed
    cache_boundary: int = 0  # prompt length worth snapshotting for reuse (set once, at admission)
    first_token_time: float | None = None
    error: str | None = None
    cache: object | None = None  # the sequence's KV cache while it holds a slot
    generator: torch.Generator | None = None
    constraint: object | None = None  # the grammar's matcher (engine/constraint.py), made in the engine

    def __post_init__(self) -> None:
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(self.params.seed)

    @property
    def all_tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def num_tokens(self) -> int:
        return len(self.prompt) + len(self.output)

    @property
    def finish_reason(self) -> str | None:
        return FINISH_REASONS.get(self.status)

    def append(self, s: Sample, now: float) -> TokenEvent:
        self.output.append(s.token)
        if self.first_token_time is None:
            self.first_token_time = now
        return TokenEvent(self.request_id, s.token, s.logprob, s.top, now)
