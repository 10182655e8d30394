"""POST /v1/responses, GET/DELETE /v1/responses/{id} — the API OpenAI recommends for gpt-oss.

With `store` (the default) a response and the conversation it continued are kept in the database, so
`previous_response_id` works across restarts. Instructions are not carried over to a continuation,
as in OpenAI's API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ossgate.backends.base import ChatTurn, Sampling, Usage
from ossgate.errors import InvalidRequest, OssgateError
from ossgate.harmony import ChatMessage
from ossgate.server import convert
from ossgate.server.assemble import sse_event
from ossgate.server.chat import sse_response, trace_headers
from ossgate.server.deps import KeyDep, ServicesDep
from ossgate.server.disconnect import DisconnectWatch
from ossgate.server.pipeline import Exchange
from ossgate.server.response_builder import ResponseBuilder
from ossgate.server.schemas import ResponseRequest
from ossgate.server.services import Services

router = APIRouter(tags=["responses"])


def input_items(body: ResponseRequest) -> list[dict[str, Any]]:
    if isinstance(body.input, str):
        return [{"type": "message", "role": "user", "content": body.input}]
    return list(body.input)


def split_tools(body: ResponseRequest, services: Services) -> tuple[list[Any], Any]:
    """(function tools, retrieval request of a `file_search` tool or None)."""
    functions, retrieval = [], None
    for i, tool in enumerate(body.tools or []):
        if isinstance(tool, dict) and tool.get("type") == "file_search":
            if "retrieve" not in services.pipeline.names:
                raise InvalidRequest(
                    "file_search needs ossgate.rag, which this server does not have", param=f"tools[{i}]"
                )
            from ossgate.server.retrieval import from_file_search_tool  # noqa: PLC0415

            retrieval = from_file_search_tool(tool, f"tools[{i}]")
        else:
            functions.append(tool)
    return functions, retrieval


def response_turn(body: ResponseRequest, history: list[dict[str, Any]], function_tools: list[Any]) -> ChatTurn:
    tools = convert.response_tools(function_tools)
    mode, forced = convert.tool_choice_of(body.tool_choice, tools, nested=False)
    messages = [ChatMessage("developer", body.instructions)] if body.instructions else []
    messages += convert.response_items(history + input_items(body))
    effort = convert.effort_of(body.reasoning.effort if body.reasoning else None, "reasoning.effort")
    sampling = Sampling(
        max_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        logprobs=body.top_logprobs,
    )
    fmt = (body.text or {}).get("format")
    return ChatTurn(
        messages=messages,
        sampling=sampling,
        effort=effort,
        tools=tools,
        tool_choice=mode,
        forced_tool=forced,
        response_format=convert.response_format_of(fmt, "text.format", nested=False),
    )


def response_json(
    ctx: Exchange,
    body: ResponseRequest,
    builder: ResponseBuilder,
    status: str,
    usage: Usage | None,
    finish_reason: str | None,
) -> dict[str, Any]:
    incomplete = None
    if finish_reason == "length":
        incomplete = {"reason": "max_output_tokens"}
    elif finish_reason == "malformed_harmony":
        incomplete = {"reason": "malformed_harmony"}  # the model broke the format; its text is in a message item
    out: dict[str, Any] = {
        "id": f"resp_{ctx.id}",
        "object": "response",
        "created_at": int(ctx.created),
        "status": "incomplete" if incomplete and status == "completed" else status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": ctx.model,
        "output": builder.output,
        "parallel_tool_calls": body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "reasoning": {
            "effort": convert.effort_of(body.reasoning.effort if body.reasoning else None, "reasoning.effort"),
            "summary": None,
        },
        "store": body.store,
        "temperature": body.temperature,
        "text": {"format": (body.text or {}).get("format") or {"type": "text"}},
        "tool_choice": body.tool_choice or "auto",
        "tools": body.tools or [],
        "top_p": body.top_p,
        "truncation": "disabled",
        "usage": None,
        "metadata": body.metadata or {},
    }
    if usage is not None:
        out["usage"] = {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens,
        }
    if ctx.citations:
        out["citations"] = ctx.citations
    return out


@router.post("/v1/responses")
async def create_response(body: ResponseRequest, request: Request, services: ServicesDep, key: KeyDep):
    history = services.responses.history(body.previous_response_id, key.id) if body.previous_response_id else []
    function_tools, retrieval = split_tools(body, services)
    turn = response_turn(body, history, function_tools)
    ctx = Exchange("/v1/responses", body.model, key, [turn], stream=body.stream)
    ctx.retrieval = retrieval
    conversation = history + input_items(body)
    await services.pipeline.run(ctx)
    if body.stream:
        return sse_response(response_stream(ctx, body, services, request, conversation), ctx)
    builder, watch = ResponseBuilder(body.top_logprobs is not None), DisconnectWatch(request, ctx.abort)
    usage, reason, error = Usage(), None, None
    try:
        async for ev in ctx.events[0]:
            if ev.kind == "finish":
                usage, reason = ev.usage or usage, ev.finish_reason
                break
            ctx.mark_first_token()
            builder.feed(ev)
        builder.close("incomplete" if reason == "length" else "completed")
    except OssgateError as e:
        error = e
        raise
    finally:
        watch.stop()
        await services.pipeline.finish(
            ctx, usage, finish_reason=reason, error=error, capture={"prompt": conversation, "response": _text(builder)}
        )
    out = response_json(ctx, body, builder, "completed", usage, reason)
    if body.store and not watch.fired:
        services.responses.put(out, conversation, key.id)
    return JSONResponse(out, headers=trace_headers(ctx))


def _text(builder: ResponseBuilder) -> str:
    return "".join(c["text"] for item in builder.output if item["type"] == "message" for c in item["content"])


async def response_stream(
    ctx: Exchange, body: ResponseRequest, services: Services, request: Request, conversation: list[dict[str, Any]]
) -> AsyncIterator[str]:
    builder, watch = ResponseBuilder(body.top_logprobs is not None), DisconnectWatch(request, ctx.abort)
    usage, reason, error = Usage(), None, None
    try:
        start = response_json(ctx, body, builder, "in_progress", None, None)
        yield sse_event(builder.event("response.created", response=start))
        yield sse_event(builder.event("response.in_progress", response=start))
        async for ev in ctx.events[0]:
            if ev.kind == "finish":
                usage, reason = ev.usage or usage, ev.finish_reason
                break
            ctx.mark_first_token()
            for out in builder.feed(ev):
                yield sse_event(out)
        for out in builder.close("incomplete" if reason == "length" else "completed"):
            yield sse_event(out)
        final = response_json(ctx, body, builder, "completed", usage, reason)
        if body.store and not watch.fired:
            services.responses.put(final, conversation, ctx.key.id)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield sse_event(builder.event(kind, response=final))
    except OssgateError as e:
        error = e
        yield sse_event(builder.event("error", code=e.code, message=e.message, param=e.param))
    finally:
        watch.stop()
        await services.pipeline.finish(
            ctx, usage, finish_reason=reason, error=error, capture={"prompt": conversation, "response": _text(builder)}
        )


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, services: ServicesDep, key: KeyDep) -> dict[str, Any]:
    return services.responses.get(response_id, key.id)


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, services: ServicesDep, key: KeyDep) -> dict[str, Any]:
    services.responses.delete(response_id, key.id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}
