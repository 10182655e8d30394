"""The engine as the server sees it: submit a prompt, get an async stream of tokens; cancel; stats.

The step loop runs in its own thread (the model releases the GIL in its kernels); tokens cross to
asyncio through `loop.call_soon_threadsafe` into a per-request queue. Submissions and aborts go the other
way through an inbox the loop drains between steps, so the event loop never waits for a model step.
Closing the stream (client gone, task cancelled) aborts the request; its KV slot is free before the next step.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ossgate.engine.core import EngineCore
from ossgate.engine.request import Request, TokenEvent
from ossgate.engine.sampling import SamplingParams

log = logging.getLogger(__name__)


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


class AsyncEngine:
    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self._inbox: queue.SimpleQueue[tuple[str, Request | str]] = queue.SimpleQueue()  # ("add", r) | ("abort", id)
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens) per step, for tokens/s
        self._callbacks: dict[str, Callable[[TokenEvent], None]] = {}  # request id -> hand-off to its queue

    @property
    def model(self):
        return self.core.model

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
        self._drain_inbox()
        for r in list(self.core.scheduler.running) + list(self.core.scheduler.waiting):
            self._abort_now(r.request_id)

    def _drain_inbox(self) -> None:
        while True:
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                self.core.scheduler.waiting.append(item)  # validated by generate()
            else:
                self._abort_now(item)

    def _loop(self) -> None:
        while not self._stop:
            self._drain_inbox()
            if not self.core.has_work:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                events = self.core.step()
            except Exception:  # a bug must end the affected requests, not hang their clients
                log.exception("engine step failed; ending running requests")
                events = self._fail_running()
            now = time.perf_counter()
            self._recent.append((now, len(events)))
            while self._recent and now - self._recent[0][0] > 10:
                self._recent.popleft()
            self._dispatch(events)

    def _fail_running(self) -> list[TokenEvent]:
        events = []
        for r in list(self.core.scheduler.running):
            self.core.abort(r.request_id)
            events.append(TokenEvent(r.request_id, -1, 0.0, [], time.perf_counter(), finish_reason="error"))
        return events

    def _dispatch(self, events: list[TokenEvent]) -> None:
        for e in events:
            callback = self._callbacks.get(e.request_id)
            if callback is not None:
                callback(e)
                if e.finish_reason is not None:
                    self._callbacks.pop(e.request_id, None)

    def _abort_now(self, request_id: str) -> None:
        """Engine thread only: end the request, free its slot, tell its stream."""
        r = self.core.abort(request_id)
        callback = self._callbacks.pop(request_id, None)
        if r is not None and callback is not None:
            callback(TokenEvent(request_id, -1, 0.0, [], time.perf_counter(), finish_reason="abort"))

    def abort(self, request_id: str) -> None:
        """Any thread: the request ends before the next step. Never blocks."""
        self._inbox.put(("abort", request_id))
        self._wake.set()

    async def generate(
        self, prompt: list[int], params: SamplingParams, request_id: str | None = None
    ) -> AsyncIterator[TokenEvent]:
        """`stream = await engine.generate(...)`, then `async for event in stream`.

        Validation errors (context, KV budget, parameters) raise from the await, before anything streams.

        The last event has `finish_reason` set; an aborted or failed request ends with token -1.
        """
        if self._thread is None:
            self.start()
        loop = asyncio.get_running_loop()
        request_id = request_id or uuid.uuid4().hex
        request = Request(request_id, list(prompt), params)
        self.core.scheduler.validate(request)
        events: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self._callbacks[request_id] = lambda e: loop.call_soon_threadsafe(events.put_nowait, e)
        self._inbox.put(("add", request))
        self._wake.set()
        return self._stream(request, events)

    async def _stream(self, request: Request, events: asyncio.Queue[TokenEvent]) -> AsyncIterator[TokenEvent]:
        try:
            while True:
                event = await events.get()
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            if not request.status.finished:
                self.abort(request.request_id)

    def stats(self) -> EngineStats:
        s = self.core.scheduler
        window = list(self._recent)
        span = (window[-1][0] - window[0][0]) if len(window) > 1 else 0.0
        tps = sum(n for _, n in window[1:]) / span if span > 0 else 0.0
        pc = self.core.prefix_cache
        return EngineStats(
            running=len(s.running),
            waiting=len(s.waiting),
            kv_usage=self.core.budget.usage,
            tokens_per_second=tps,
            prefix_cache_hits=pc.hits,
            prefix_cache_hit_tokens=pc.hit_tokens,
            tokens_generated=self.core.tokens_generated,
            tokens_prefilled=self.core.tokens_prefilled,
        )
