"""POST /v1/chat/completions.

Reasoning comes back in `reasoning` and, for older clients, `reasoning_content` (omitted with
`include_reasoning: false`); commentary-channel calls come back as `tool_calls`, streamed as deltas.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ossgate.backends.base import ChatTurn, Sampling, Usage
from ossgate.errors import InvalidRequest, OssgateError
from ossgate.server import convert
from ossgate.server.assemble import TurnResult, add_usage, collect_all, logprob_json, merged, sse, usage_json
from ossgate.server.deps import KeyDep, ServicesDep
from ossgate.server.disconnect import DisconnectWatch
from ossgate.server.error_json import to_response
from ossgate.server.pipeline import Exchange
from ossgate.server.schemas import ChatCompletionRequest
from ossgate.server.services import Services

router = APIRouter(tags=["chat"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def chat_turn(body: ChatCompletionRequest) -> ChatTurn:
    tools = convert.chat_tools(body.tools)
    mode, forced = convert.tool_choice_of(body.tool_choice, tools, nested=True)
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    sampling = Sampling(
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
    )
    return ChatTurn(
        messages=convert.chat_messages(body.messages),
        sampling=sampling,
        effort=convert.effort_of(body.reasoning_effort, "reasoning_effort"),
        tools=tools,
        tool_choice=mode,
        forced_tool=forced,
        response_format=convert.response_format_of(body.response_format, "response_format", nested=True),
    )


def retrieval_request(services: Services, rag: dict[str, Any]):
    if "retrieve" not in services.pipeline.names:
        raise InvalidRequest("the `rag` extension needs ossgate.rag, which this server does not have", param="rag")
    from ossgate.server.retrieval import from_chat_extension  # noqa: PLC0415

    return from_chat_extension(rag)


def trace_headers(ctx: Exchange) -> dict[str, str]:
    return {"x-ossgate-trace-id": ctx.trace.trace_id} if ctx.trace is not None else {}


def sse_response(events: AsyncIterator[str], ctx: Exchange) -> StreamingResponse:
    """A server-sent-events response (unbuffered by proxies) carrying the request's trace id."""
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS | trace_headers(ctx))


@router.post("/v1/chat/completions")
async def create_chat_completion(body: ChatCompletionRequest, request: Request, services: ServicesDep, key: KeyDep):
    turn = chat_turn(body)
    ctx = Exchange("/v1/chat/completions", body.model, key, [turn] * body.n, stream=body.stream)
    if body.rag is not None:
        ctx.retrieval = retrieval_request(services, body.rag)
    await services.pipeline.run(ctx)
    if body.stream:
        return sse_response(chat_stream(ctx, body, services, request), ctx)
    watch = DisconnectWatch(request, ctx.abort)
    results: list[TurnResult] = []
    error: BaseException | None = None
    try:
        results = await collect_all(ctx)
    except OssgateError as e:
        error = e
        raise
    finally:
        watch.stop()
        usage = Usage()
        for r in results:
            add_usage(usage, r.usage)
        await services.pipeline.finish(
            ctx,
            usage,
            finish_reason=results[0].finish_reason if results else None,
            error=error,
            capture=_capture(body, results),
        )
    return JSONResponse(chat_json(ctx, body, results, usage), headers=trace_headers(ctx))


def _capture(body: ChatCompletionRequest, results: list[TurnResult]) -> dict[str, Any]:
    first = results[0] if results else TurnResult()
    return {"prompt": body.messages, "response": first.content, "reasoning": first.reasoning}


def chat_json(ctx: Exchange, body: ChatCompletionRequest, results: list[TurnResult], usage: Usage) -> dict[str, Any]:
    choices = []
    for i, r in enumerate(results):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": r.content if (r.content or not r.tool_calls) else None,
        }
        if r.reasoning and body.include_reasoning:
            message["reasoning"] = message["reasoning_content"] = r.reasoning
        if r.tool_calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in r.tool_calls
            ]
        logprobs = {"content": [logprob_json(lp) for lp in r.logprobs]} if body.logprobs else None
        choices.append({"index": i, "message": message, "logprobs": logprobs, "finish_reason": r.finish_reason})
    out = {
        "id": f"chatcmpl-{ctx.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": ctx.model,
        "choices": choices,
        "usage": usage_json(usage),
        "system_fingerprint": None,
    }
    if ctx.citations:
        out["citations"] = ctx.citations
    return out


async def chat_stream(
    ctx: Exchange, body: ChatCompletionRequest, services: Services, request: Request
) -> AsyncIterator[str]:
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    base = {
        "id": f"chatcmpl-{ctx.id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": ctx.model,
        "system_fingerprint": None,
    }

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None, logprobs: Any = None) -> str:
        out = base | {
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]
        }
        if include_usage:
            out["usage"] = None
        return sse(out)

    watch = DisconnectWatch(request, ctx.abort)
    usage, reasons, error = Usage(), [], None
    content: list[str] = []
    try:
        for i in range(len(ctx.events)):
            yield chunk(i, {"role": "assistant", "content": ""})
        async for i, ev in merged(ctx.events):
            if ev.kind == "finish":
                add_usage(usage, ev.usage)
                reasons.append(ev.finish_reason)
                yield chunk(i, {}, ev.finish_reason)
                continue
            ctx.mark_first_token()
            if ev.kind == "reasoning":
                if body.include_reasoning:
                    yield chunk(i, {"reasoning": ev.text, "reasoning_content": ev.text})
            elif ev.kind == "content":
                lp = {"content": [logprob_json(x) for x in ev.logprobs]} if body.logprobs and ev.logprobs else None
                if i == 0:
                    content.append(ev.text)
                yield chunk(i, {"content": ev.text}, logprobs=lp)
            else:
                call: dict[str, Any] = {"index": ev.tool_index, "function": {"arguments": ev.text}}
                if ev.tool_name is not None:
                    call |= {
                        "id": ev.tool_id,
                        "type": "function",
                        "function": {"name": ev.tool_name, "arguments": ev.text},
                    }
                yield chunk(i, {"tool_calls": [call]})
        if include_usage:
            yield sse(base | {"choices": [], "usage": usage_json(usage)})
        if ctx.citations:
            yield sse(base | {"choices": [], "citations": ctx.citations})
        yield sse("[DONE]")
    except OssgateError as e:  # after the headers went out: the error travels in the stream
        error = e
        yield sse(to_response(e).body.decode())
        yield sse("[DONE]")
    finally:
        watch.stop()
        await services.pipeline.finish(
            ctx,
            usage,
            finish_reason=reasons[0] if reasons else "abort",
            error=error,
            capture={"prompt": body.messages, "response": "".join(content)},
        )
