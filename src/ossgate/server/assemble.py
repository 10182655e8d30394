"""Shared by the routes: OutputEvent streams -> finished turns, merged choices, usage and logprob JSON, SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ossgate.backends.base import OutputEvent, TokenLogprob, Usage
from ossgate.server.pipeline import Exchange


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def sse_event(data: dict[str, Any]) -> str:
    """A named SSE event (the Responses API's streaming format)."""
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


def usage_json(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def add_usage(total: Usage, u: Usage | None) -> None:
    if u is not None:
        total.prompt_tokens += u.prompt_tokens
        total.completion_tokens += u.completion_tokens
        total.reasoning_tokens += u.reasoning_tokens
        total.cached_tokens += u.cached_tokens


def logprob_json(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": lp.bytes,
        "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, v, b in lp.top],
    }


@dataclass
class TurnResult:
    """A whole assistant turn, collected from its events."""

    reasoning: str = ""
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {id, name, arguments}
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str = "abort"
    usage: Usage = field(default_factory=Usage)


async def collect(events: AsyncIterator[OutputEvent], ctx: Exchange) -> TurnResult:
    reasoning, content, out = [], [], TurnResult()
    async for ev in events:
        if ev.kind == "finish":
            out.finish_reason, out.usage = ev.finish_reason or "stop", ev.usage or Usage()
            break
        ctx.mark_first_token()
        if ev.kind == "reasoning":
            reasoning.append(ev.text)
        elif ev.kind == "content":
            content.append(ev.text)
            out.logprobs += ev.logprobs or []
        elif ev.kind == "tool_call":
            if ev.tool_index >= len(out.tool_calls):
                out.tool_calls.append(
                    {"id": ev.tool_id or f"call_{ctx.id}_{ev.tool_index}", "name": ev.tool_name or "", "arguments": ""}
                )
            out.tool_calls[ev.tool_index]["arguments"] += ev.text
    out.reasoning, out.content = "".join(reasoning), "".join(content)
    return out


async def collect_all(ctx: Exchange) -> list[TurnResult]:
    if len(ctx.events) == 1:
        return [await collect(ctx.events[0], ctx)]
    return list(await asyncio.gather(*(collect(e, ctx) for e in ctx.events)))


async def merged(streams: list[AsyncIterator]) -> AsyncIterator[tuple[int, Any]]:
    """(choice index, event) from several streams as they come; one stream is passed straight through."""
    if len(streams) == 1:
        async for ev in streams[0]:
            yield 0, ev
        return
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(i: int, stream: AsyncIterator) -> None:
        try:
            async for ev in stream:
                await queue.put((i, ev))
        except Exception as e:  # handed to the consumer, which re-raises it in the route
            await queue.put((i, e))
        finally:
            await queue.put((i, done))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            i, ev = await queue.get()
            if ev is done:
                remaining -= 1
            elif isinstance(ev, Exception):
                raise ev
            else:
                yield i, ev
    finally:
        for t in tasks:
            t.cancel()
