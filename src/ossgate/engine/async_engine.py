"""The engine as the server sees it: submit a prompt, get an async stream of tokens; cancel; stats.

Two ways to run the step loop behind the same interface (after vLLM V1's AsyncLLM / EngineCore split):

- `AsyncEngine` (here): the loop runs in a thread of this process. Simple, and what tools and tests that hold a
  model in hand use. Its cost: where the model's forward pass is Python-bound (small models on CPU), the step
  loop and the event loop compete for one GIL.
- `ProcessEngine` (engine_process.py): the loop runs in its own process; only token ids cross over, one
  message per engine step. What `ossgate serve` uses by default.

Thread mode: tokens cross to asyncio once per engine step (`loop.call_soon_threadsafe` with all the step's
events), into one `TokenStream` per request. Submissions and aborts go the other way through an inbox the
loop drains between steps, so the event loop never waits for a model step. Closing the stream (client gone,
task cancelled) aborts the request; its KV slot is free before the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import torch

from ossgate.engine.core import EngineCore
from ossgate.engine.kv_cache import KVBudget
from ossgate.engine.request import Request, TokenEvent
from ossgate.engine.sampling import SamplingParams

log = logging.getLogger(__name__)

PROMPT_SCORE_CHUNK = 512  # rows of logits materialised at once when scoring a prompt (V floats each)
RATE_WINDOW_S = 10.0  # tokens_per_second is measured over this window

# (token, logprob, [(alternative, logprob)]) for each prompt token after the first
PromptScore = list[tuple[int, float, list[tuple[int, float]]] | None]


@dataclass
class EngineStats:
    running: int  # sequences holding a KV slot
    waiting: int  # admitted to the engine, not yet scheduled
    kv_usage: float  # fraction of the KV budget reserved
    tokens_per_second: float  # generated tokens over the last ~10 s
    prefix_cache_hits: int
    prefix_cache_hit_tokens: int
    tokens_generated: int
    tokens_prefilled: int


def core_counters(core: EngineCore) -> tuple[int, int, float, int, int, int, int]:
    """(running, waiting, kv_usage, prefix hits, prefix hit tokens, generated, prefilled): EngineStats less the rate."""
    s, pc = core.scheduler, core.prefix_cache
    return (
        len(s.running),
        len(s.waiting),
        core.budget.usage,
        pc.hits,
        pc.hit_tokens,
        core.tokens_generated,
        core.tokens_prefilled,
    )


class TokenRate:
    """Generated tokens per second over the last RATE_WINDOW_S, fed once per engine step."""

    def __init__(self) -> None:
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens) per step

    def add(self, now: float, tokens: int) -> None:
        self._recent.append((now, tokens))
        while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
            self._recent.popleft()

    def value(self) -> float:
        window = list(self._recent)
        span = (window[-1][0] - window[0][0]) if len(window) > 1 else 0.0
        return sum(n for _, n in window[1:]) / span if span > 0 else 0.0


class TokenStream:
    """One request's tokens on their way to its consumer; lives on the consumer's event loop.

    Cheaper than an asyncio.Queue per token: a deque and at most one waiting future.
    """

    __slots__ = ("request_id", "loop", "_events", "_waiter", "_error", "finished")

    def __init__(self, request_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.request_id = request_id
        self.loop = loop
        self._events: deque[TokenEvent] = deque()
        self._waiter: asyncio.Future | None = None
        self._error: BaseException | None = None
        self.finished = False  # the last event (finish_reason set) or an error has arrived

    def push(self, event: TokenEvent) -> None:
        """Event-loop thread only."""
        self._events.append(event)
        if event.finish_reason is not None:
            self.finished = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """End the stream with an exception (the engine is gone). Event-loop thread only."""
        self._error = error
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> TokenEvent:
        while not self._events:
            if self._error is not None:
                raise self._error
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._events.popleft()


async def iterate(stream: TokenStream, abort: Callable[[str], None]) -> AsyncIterator[TokenEvent]:
    """The async iterator `generate` returns; leaving it early aborts the request."""
    try:
        while True:
            event = await stream.get()
            yield event
            if event.finish_reason is not None:
                return
    finally:
        if not stream.finished:
            abort(stream.request_id)


@torch.inference_mode()
def score_prompt(core: EngineCore, prompt: list[int], top_n: int) -> PromptScore:
    """Log-probability of each prompt token given the ones before it (None for the first), plus top-N.

    A separate forward pass with its own KV cache: the engine step loop only samples last positions.
    """
    model = core.model
    cache = core.make_cache(len(prompt))
    out: PromptScore = [None]
    for start in range(0, len(prompt), PROMPT_SCORE_CHUNK):
        chunk = prompt[start : start + PROMPT_SCORE_CHUNK]
        hidden = model(
            torch.tensor(chunk, device=model.device),
            torch.arange(start, start + len(chunk), device=model.device),
            [len(chunk)],
            [cache],
        )
        logprobs = torch.log_softmax(model.logits(hidden).float(), dim=-1).cpu()  # (chunk, V)
        for i in range(len(chunk)):
            pos = start + i
            if pos + 1 >= len(prompt):
                break
            nxt = prompt[pos + 1]
            top: list[tuple[int, float]] = []
            if top_n:
                values, ids = torch.topk(logprobs[i], top_n)
                top = list(zip(ids.tolist(), values.tolist(), strict=True))
            out.append((nxt, float(logprobs[i, nxt]), top))
    return out


class AsyncEngine:
    """The step loop in a thread of this process (see the module docstring)."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self._inbox: queue.SimpleQueue[tuple[str, Request | str]] = queue.SimpleQueue()  # ("add", r) | ("abort", id)
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._rate = TokenRate()
        self._streams: dict[str, TokenStream] = {}  # request id -> its stream; engine thread only after submit

    @property
    def model(self):
        return self.core.model

    @property
    def model_config(self):
        return self.core.model.config

    @property
    def budget(self) -> KVBudget:
        return self.core.budget

    @property
    def alive(self) -> bool:
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ossgate-engine", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Stop the loop; requests still running or queued are ended with finish_reason 'abort'."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        aborted = self._drain_inbox()
        for r in list(self.core.scheduler.running) + list(self.core.scheduler.waiting):
            aborted += self._abort_now(r.request_id)
        self._dispatch(aborted)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.shutdown)

    def _drain_inbox(self) -> list[TokenEvent]:
        """Take submissions and aborts; returns the abort events to hand out."""
        aborted: list[TokenEvent] = []
        while True:
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                return aborted
            if kind == "add":
                self.core.scheduler.waiting.append(item)  # validated by generate()
            else:
                aborted += self._abort_now(item)

    def _loop(self) -> None:
        while not self._stop:
            events = self._drain_inbox()
            if not self.core.has_work:
                self._dispatch(events)
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                stepped = self.core.step()
            except Exception:  # a bug must end the affected requests, not hang their clients
                log.exception("engine step failed; ending running requests")
                stepped = fail_running(self.core)
            self._rate.add(time.perf_counter(), len(stepped))
            self._dispatch(events + stepped)

    def _dispatch(self, events: list[TokenEvent]) -> None:
        """Engine thread: hand a step's events to their streams, one wake-up per event loop (not per token)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[TokenStream, TokenEvent]]] = {}
        for e in events:
            stream = self._streams.get(e.request_id)
            if stream is None:
                continue
            if e.finish_reason is not None:
                del self._streams[e.request_id]
            by_loop.setdefault(stream.loop, []).append((stream, e))
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is listening any more
                loop.call_soon_threadsafe(_deliver, batch)

    def _abort_now(self, request_id: str) -> list[TokenEvent]:
        """Engine thread only: end the request, free its slot; returns the event that tells its stream."""
        r = self.core.abort(request_id)
        if r is None or request_id not in self._streams:
            self._streams.pop(request_id, None)
            return []
        return [TokenEvent(request_id, -1, 0.0, [], time.perf_counter(), finish_reason="abort")]

    def abort(self, request_id: str) -> None:
        """Any thread: the request ends before the next step. Never blocks."""
        self._inbox.put(("abort", request_id))
        self._wake.set()

    def validate(self, request: Request) -> None:
        self.core.scheduler.validate(request)

    async def generate(
        self, prompt: list[int], params: SamplingParams, request_id: str | None = None
    ) -> AsyncIterator[TokenEvent]:
        """`stream = await engine.generate(...)`, then `async for event in stream`.

        Validation errors (context, KV budget, parameters) raise from the await, before anything streams.

        The last event has `finish_reason` set; an aborted or failed request ends with token -1.
        """
        if self._thread is None:
            self.start()
        request_id = request_id or uuid.uuid4().hex
        request = Request(request_id, list(prompt), params)
        self.core.scheduler.validate(request)
        stream = TokenStream(request_id, asyncio.get_running_loop())
        self._streams[request_id] = stream
        self._inbox.put(("add", request))
        self._wake.set()
        return iterate(stream, self.abort)

    async def score(self, prompt: list[int], top_n: int) -> PromptScore:
        """Prompt-token logprobs (echo + logprobs); runs beside the step loop on the same weights."""
        return await asyncio.to_thread(score_prompt, self.core, prompt, top_n)

    def stats(self) -> EngineStats:
        running, waiting, kv, hits, hit_tokens, generated, prefilled = core_counters(self.core)
        return EngineStats(running, waiting, kv, self._rate.value(), hits, hit_tokens, generated, prefilled)


def _deliver(batch: list[tuple[TokenStream, TokenEvent]]) -> None:
    for stream, event in batch:
        stream.push(event)


def fail_running(core: EngineCore) -> list[TokenEvent]:
    """After a failed step: end every running request with finish_reason 'error'."""
    events = []
    for r in list(core.scheduler.running):
        core.abort(r.request_id)
        events.append(TokenEvent(r.request_id, -1, 0.0, [], time.perf_counter(), finish_reason="error"))
    return events
