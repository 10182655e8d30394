"""POST /v1/completions: a raw prompt, no harmony — with `echo` and prompt logprobs, so
lm-evaluation-harness's `local-completions` can score log-likelihood tasks (it sends max_tokens 0 or 1,
echo true, logprobs 1 and reads token_logprobs / top_logprobs of the prompt)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ossgate.backends.base import CompletionEvent, CompletionTurn, Sampling, TokenLogprob, Usage
from ossgate.errors import InvalidRequest, OssgateError
from ossgate.server.assemble import add_usage, merged, sse, usage_json
from ossgate.server.chat import sse_response, trace_headers
from ossgate.server.deps import KeyDep, ServicesDep
from ossgate.server.disconnect import DisconnectWatch
from ossgate.server.error_json import to_response
from ossgate.server.pipeline import Exchange
from ossgate.server.schemas import CompletionRequest
from ossgate.server.services import Services

router = APIRouter(tags=["completions"])


def prompts_of(prompt: Any) -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise InvalidRequest("prompt is empty", param="prompt")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]
    return list(prompt)


class LogprobsJson:
    """OpenAI's legacy completion logprobs: parallel lists of tokens, logprobs, top alternatives, offsets."""

    def __init__(self, offset: int = 0) -> None:
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.text_offset: list[int] = []
        self.offset = offset

    def add(self, entries: list[TokenLogprob | None]) -> None:
        for lp in entries:
            self.text_offset.append(self.offset)
            if lp is None:  # the first prompt token: nothing before it to condition on
                self.tokens.append("")
                self.token_logprobs.append(None)
                self.top_logprobs.append(None)
                continue
            self.tokens.append(lp.token)
            self.token_logprobs.append(lp.logprob)
            self.top_logprobs.append({t: v for t, v, _ in lp.top} or {lp.token: lp.logprob})
            self.offset += len(lp.token)

    def json(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


def _first_token_text(ev: CompletionEvent, lp: LogprobsJson) -> None:
    """The first prompt token has no logprob entry of its own; name it from the echoed text."""
    if ev.logprobs and ev.logprobs[0] is None and lp.tokens and lp.tokens[0] == "":
        rest = sum(len(t) for t in lp.tokens[1:])
        lp.tokens[0] = ev.text[: len(ev.text) - rest]
        lp.text_offset[1:] = [o + len(lp.tokens[0]) for o in lp.text_offset[1:]]


@router.post("/v1/completions")
async def create_completion(body: CompletionRequest, request: Request, services: ServicesDep, key: KeyDep):
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    sampling = Sampling(
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
        logprobs=body.logprobs,
    )
    turns = [CompletionTurn(p, sampling, echo=body.echo) for p in prompts_of(body.prompt) for _ in range(body.n)]
    ctx = Exchange("/v1/completions", body.model, key, turns, stream=body.stream)
    await services.pipeline.run(ctx)
    if body.stream:
        return sse_response(completion_stream(ctx, body, services, request), ctx)
    watch = DisconnectWatch(request, ctx.abort)
    texts = [""] * len(turns)
    logprobs = [LogprobsJson() for _ in turns]
    reasons: list[str | None] = [None] * len(turns)
    usage, error = Usage(), None
    try:
        async for i, ev in merged(ctx.events):
            if ev.finish_reason is not None:
                reasons[i] = ev.finish_reason
                add_usage(usage, ev.usage)
                continue
            ctx.mark_first_token()
            texts[i] += ev.text
            if ev.logprobs:
                logprobs[i].add(ev.logprobs)
                _first_token_text(ev, logprobs[i])
    except OssgateError as e:
        error = e
        raise
    finally:
        watch.stop()
        await services.pipeline.finish(
            ctx,
            usage,
            finish_reason=reasons[0],
            error=error,
            capture={"prompt": str(body.prompt)[:10000], "response": texts[0]},
        )
    choices = [
        {
            "index": i,
            "text": texts[i],
            "logprobs": logprobs[i].json() if body.logprobs is not None else None,
            "finish_reason": reasons[i],
        }
        for i in range(len(turns))
    ]
    return JSONResponse(
        {
            "id": f"cmpl-{ctx.id}",
            "object": "text_completion",
            "created": int(ctx.created),
            "model": ctx.model,
            "choices": choices,
            "usage": usage_json(usage),
        },
        headers=trace_headers(ctx),
    )


async def completion_stream(
    ctx: Exchange, body: CompletionRequest, services: Services, request: Request
) -> AsyncIterator[str]:
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    base = {"id": f"cmpl-{ctx.id}", "object": "text_completion", "created": int(ctx.created), "model": ctx.model}
    watch = DisconnectWatch(request, ctx.abort)
    usage, error, reason = Usage(), None, None
    try:
        async for i, ev in merged(ctx.events):
            if ev.finish_reason is not None:
                add_usage(usage, ev.usage)
                reason = reason or ev.finish_reason
                yield sse(
                    base | {"choices": [{"index": i, "text": "", "logprobs": None, "finish_reason": ev.finish_reason}]}
                )
                continue
            ctx.mark_first_token()
            lp = None
            if body.logprobs is not None and ev.logprobs:
                j = LogprobsJson()
                j.add(ev.logprobs)
                lp = j.json()
            yield sse(base | {"choices": [{"index": i, "text": ev.text, "logprobs": lp, "finish_reason": None}]})
        if include_usage:
            yield sse(base | {"choices": [], "usage": usage_json(usage)})
        yield sse("[DONE]")
    except OssgateError as e:
        error = e
        yield sse(to_response(e).body.decode())
        yield sse("[DONE]")
    finally:
        watch.stop()
        await services.pipeline.finish(ctx, usage, finish_reason=reason, error=error)
