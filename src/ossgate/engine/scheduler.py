"""Continuous batching (after vLLM v1's scheduler): no prefill or decode *mode*, just requests whose
computed tokens catch up with their tokens, a token budget per step, and admission between steps.

Each step: every running request gets its next chunk (1 token when decoding; up to the remaining
token budget when prefilling, so a long prompt is chunked and never stalls the decodes), then waiting
requests are admitted while slots, token budget and KV budget allow. The scheduler never touches the
model: `schedule()` returns what to compute, `update_from_output()` takes the sampled tokens back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ossgate.engine.kv_cache import KVBudget, SequenceKV
from ossgate.engine.prefix_cache import PrefixCache
from ossgate.engine.request import Request, Status, TokenEvent
from ossgate.engine.sampling import Sample
from ossgate.errors import ContextOverflow, InvalidRequest


@dataclass
class Chunk:
    request: Request
    start: int  # first position computed this step
    num_tokens: int

    @property
    def samples(self) -> bool:
        """True if this chunk reaches the request's last token, so its logits are sampled."""
        return self.start + self.num_tokens == self.request.num_tokens


@dataclass
class SchedulerOutput:
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(c.num_tokens for c in self.chunks)


@dataclass
class SchedulerConfig:
    max_running: int = 32  # sequences decoded together in one step
    max_tokens_per_step: int = 512  # prefill chunk budget; bounds a step's latency for running decodes
    max_context: int = 131072


class Scheduler:
    def __init__(
        self,
        config: SchedulerConfig,
        budget: KVBudget,
        make_cache: Callable[[int], SequenceKV],
        prefix_cache: PrefixCache | None = None,
        prefix_boundary: Callable[[list[int]], int] | None = None,
    ) -> None:
        self.config, self.budget, self.make_cache = config, budget, make_cache
        self.prefix_cache = prefix_cache
        self.prefix_boundary = prefix_boundary
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []

    # ---- intake -------------------------------------------------------------------------------

    def reservation(self, r: Request) -> int:
        return min(len(r.prompt) + r.params.max_tokens, self.config.max_context)

    def add(self, r: Request) -> None:
        """Queue a request; reject at once what could never run (empty, over the context, over the KV budget)."""
        self.validate(r)
        self.waiting.append(r)

    def validate(self, r: Request) -> None:
        """Raise a user-facing error if the request could never run. Reads only fixed limits: any thread may call it."""
        if not r.prompt:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if len(r.prompt) >= self.config.max_context:
            raise ContextOverflow(
                f"the prompt has {len(r.prompt)} tokens; this model's context is {self.config.max_context} tokens"
            )
        if not self.budget.fits_ever(self.reservation(r)):
            most = (self.budget.limit_bytes - self.budget.per_sequence) // self.budget.per_token
            raise ContextOverflow(
                f"prompt + max_tokens = {self.reservation(r)} tokens exceeds the KV-cache budget of {most} tokens; "
                "lower max_tokens or shorten the prompt"
            )
        r.params.validate()

    def abort(self, request_id: str) -> Request | None:
        for r in list(self.waiting):
            if r.request_id == request_id:
                self.waiting.remove(r)
                r.status = Status.FINISHED_ABORTED
                return r
        for r in self.running:
            if r.request_id == request_id:
                self._finish(r, Status.FINISHED_ABORTED)
                return r
        return None

    # ---- one step -----------------------------------------------------------------------------

    def _chunk(self, r: Request, budget: int) -> int:
        n = min(r.num_tokens - r.num_computed, budget)
        if r.num_computed < r.cache_boundary < r.num_computed + n:
            n = r.cache_boundary - r.num_computed  # end the chunk at the boundary so it can be snapshotted
        return n

    def _admit(self, r: Request) -> None:
        capacity = self.reservation(r)
        reused, snapshot = (0, None)
        if self.prefix_cache is not None:
            reused, snapshot = self.prefix_cache.lookup(r.prompt)
        r.cache = snapshot.copy(capacity) if snapshot is not None else self.make_cache(capacity)
        if self.prefix_boundary is not None:
            r.cache_boundary = self.prefix_boundary(r.prompt)
        r.num_computed = r.num_cached_prefix = reused
        r.status = Status.RUNNING
        self.running.append(r)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        left = self.config.max_tokens_per_step
        for r in self.running:
            n = self._chunk(r, max(left, 1))  # a decode always gets its token, whatever the budget
            out.chunks.append(Chunk(r, r.num_computed, n))
            left -= n
        while self.waiting and len(self.running) < self.config.max_running and left > 0:
            r = self.waiting[0]
            if not self.budget.try_reserve(self.reservation(r)):
                break  # FIFO: wait until a running sequence frees its reservation
            self.waiting.popleft()
            self._admit(r)
            n = self._chunk(r, left)
            out.chunks.append(Chunk(r, r.num_computed, n))
            left -= n
        return out

    def update_from_output(self, out: SchedulerOutput, samples: dict[str, Sample], now: float) -> list[TokenEvent]:
        """Advance computed counts, append sampled tokens, finish what stopped. Returns the new tokens."""
        events = []
        for c in out.chunks:
            r = c.request
            if r.status.finished:  # aborted while the step ran
                continue
            r.num_computed = c.start + c.num_tokens
            self._maybe_snapshot(r)
            if not c.samples:
                continue
            event = r.append(samples[r.request_id], now)
            status = self._stop_status(r)
            if status is not None:
                self._finish(r, status)
                event.finish_reason = r.finish_reason
            events.append(event)
        return events

    def _maybe_snapshot(self, r: Request) -> None:
        if self.prefix_cache is None or r.num_computed > len(r.prompt) or r.num_computed == 0:
            return
        if r.num_computed in (r.cache_boundary, len(r.prompt)):
            self.prefix_cache.store(r.prompt[: r.num_computed], r.cache.copy(r.num_computed))

    def _stop_status(self, r: Request) -> Status | None:
        if r.output[-1] in r.params.stop_token_ids or (r.constraint is not None and r.constraint.done):
            return Status.FINISHED_STOPPED
        if len(r.output) >= r.params.max_tokens or r.num_tokens >= self.config.max_context:
            return Status.FINISHED_LENGTH
        return None

    def _finish(self, r: Request, status: Status) -> None:
        r.status = status
        if r in self.running:
            self.running.remove(r)
            self.budget.release(self.reservation(r))
        r.cache = None  # the slot is free at once

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)
