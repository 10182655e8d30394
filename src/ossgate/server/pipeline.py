"""The request pipeline: an explicit list of stages, built from config, run in order for each generation.

Each stage is a small object with one `async run(ctx)` method that reads and fills the `Exchange`.
`Pipeline.run` is the one place that opens a trace span per stage (observe/), so stages never deal
with tracing. A stage that is not configured is absent from the list — never a no-op pretending to work.

    rate_limit -> route -> admit -> [retrieve] -> generate       then the route streams ctx.events

Authentication happens before, as a FastAPI dependency, because every route needs it (models,
tokenize, …), not only the generating ones. Harmony rendering and parsing live in the native backend:
an upstream backend speaks messages, not tokens. Stages later issues bring (guard.input before
generate; guard.output, which wraps ctx.events) slot into `build_pipeline`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ossgate.backends.base import Backend, ChatTurn, CompletionTurn, Usage
from ossgate.backends.router import Router
from ossgate.server.access import ApiKey, RateLimiter
from ossgate.server.admission import AdmissionGate, Ticket

log = logging.getLogger(__name__)


@dataclass
class Exchange:
    """One generation request on its way through the pipeline."""

    endpoint: str  # /v1/chat/completions | /v1/responses | /v1/completions
    model: str | None
    key: ApiKey
    turns: list[ChatTurn | CompletionTurn]  # one per choice to generate
    stream: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    trace: Any = None  # observe.Trace when a tracer is configured
    backend: Backend | None = None  # set by RouteStage
    ticket: Ticket | None = None  # set by AdmitStage: places in the backend's queue
    events: list[AsyncIterator] = field(default_factory=list)  # set by GenerateStage, one stream per turn
    retrieval: Any = None  # what the request asked to retrieve (retrieval.RetrievalRequest), if anything
    citations: list[dict] = field(default_factory=list)  # set by the retrieval stage
    created: float = field(default_factory=time.time)  # wall clock, for the response's created_at
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    stream_span: Any = None  # the trace span from submission to the last token
    finished: bool = False

    def mark_first_token(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()
            if self.trace is not None:
                self.trace.first_token()

    def abort(self) -> None:
        """End this exchange's generations now (client gone); their streams finish with reason `abort`."""
        if self.backend is not None:
            for turn in self.turns:
                self.backend.abort(turn.request_id)


class Stage(Protocol):
    name: str

    async def run(self, ctx: Exchange) -> None: ...


class RateLimitStage:
    """Per-key request and token rates (keys may carry their own limits at any time)."""

    name = "rate_limit"

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def run(self, ctx: Exchange) -> None:
        self.limiter.admit(ctx.key)


class RouteStage:
    name = "route"

    def __init__(self, router: Router) -> None:
        self.router = router

    async def run(self, ctx: Exchange) -> None:
        ctx.backend = self.router.pick(ctx.model)
        ctx.model = ctx.backend.name
        if ctx.trace is not None:
            ctx.trace.set(model=ctx.backend.name, backend=ctx.backend.kind)


class AdmitStage:
    """A place in the backend's bounded queue, or 429 with Retry-After."""

    name = "admit"

    def __init__(self, gates: dict[str, AdmissionGate]) -> None:
        self.gates = gates

    async def run(self, ctx: Exchange) -> None:
        ctx.ticket = self.gates[ctx.backend.name].acquire(len(ctx.turns))


class GenerateStage:
    """Submits each turn: context, parameter and upstream errors surface here, before anything streams."""

    name = "generate"

    async def run(self, ctx: Exchange) -> None:
        for i, turn in enumerate(ctx.turns):
            seed = turn.sampling.seed
            if len(ctx.turns) > 1 and seed is not None:  # distinct yet reproducible choices
                turn = replace(turn, sampling=replace(turn.sampling, seed=seed + i))
            turn = ctx.turns[i] = replace(turn, request_id=f"{ctx.id}-{i}")
            if isinstance(turn, ChatTurn):
                ctx.events.append(await ctx.backend.chat(turn))
            else:
                ctx.events.append(await ctx.backend.complete(turn))


FinishHook = Callable[[Exchange, Usage], None]


class Pipeline:
    def __init__(self, stages: list[Stage], *, tracer: Any = None, on_finish: list[FinishHook] | None = None) -> None:
        self.stages = stages
        self.tracer = tracer
        self.on_finish = on_finish or []

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    async def run(self, ctx: Exchange) -> Exchange:
        """Run every stage; on failure release what earlier stages took, close the trace and re-raise."""
        if self.tracer is not None:
            ctx.trace = self.tracer.start(
                endpoint=ctx.endpoint,
                model=ctx.model,
                stream=ctx.stream,
                key_id=ctx.key.id or None,
                tenant_id=ctx.key.id or None,
            )
        try:
            for stage in self.stages:
                if ctx.trace is None:
                    await stage.run(ctx)
                else:
                    with ctx.trace.span(stage.name):
                        await stage.run(ctx)
        except BaseException as e:
            await self.finish(ctx, Usage(), error=e)
            raise
        if ctx.trace is not None:
            ctx.stream_span = ctx.trace.start_span("stream")
        return ctx

    async def finish(
        self,
        ctx: Exchange,
        usage: Usage,
        *,
        finish_reason: str | None = None,
        error: BaseException | None = None,
        capture: dict | None = None,
    ) -> None:
        """Once per exchange, after the response is complete or the client left: release, charge, report."""
        if ctx.finished:
            return
        ctx.finished = True
        for stream in ctx.events:
            await stream.aclose()
        if ctx.ticket is not None:
            ctx.ticket.release()
        for hook in self.on_finish:
            hook(ctx, usage)
        if ctx.trace is not None:
            trace = ctx.trace
            trace.record(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cached_tokens=usage.cached_tokens,
                finish_reason=finish_reason,
            )
            if capture:
                trace.capture(**capture)
            if error is not None:
                trace.fail(error)
            self.tracer.finish(trace)


def build_pipeline(
    router: Router,
    gates: dict[str, AdmissionGate],
    limiter: RateLimiter,
    *,
    tracer: Any = None,
    retrieval: Stage | None = None,
) -> Pipeline:
    """The stages this deployment runs, in order."""
    stages: list[Stage] = [RateLimitStage(limiter), RouteStage(router), AdmitStage(gates)]
    if retrieval is not None:
        stages.append(retrieval)
    stages.append(GenerateStage())
    return Pipeline(stages, tracer=tracer, on_finish=[lambda ctx, usage: limiter.charge(ctx.key, usage.total_tokens)])
