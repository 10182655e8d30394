"""One-shot generation on the engine (CLI, evaluation, scripts): no server, no threads."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ossgate import harmony
from ossgate.engine.core import EngineConfig, EngineCore
from ossgate.engine.request import Request, TokenEvent
from ossgate.engine.sampling import SamplingParams
from ossgate.harmony import ChatMessage, Completion, Delta, Tool
from ossgate.model.transformer import Transformer

_ids = itertools.count()


def stream(
    model: Transformer, prompt_ids: list[int], params: SamplingParams, core: EngineCore | None = None
) -> Iterator[TokenEvent]:
    """Yield tokens for one prompt as they are sampled."""
    core = core or EngineCore(model, EngineConfig(max_running=1, prefix_cache_bytes=0))
    request = Request(f"gen-{next(_ids)}", list(prompt_ids), params)
    core.add(request)
    while core.has_work:
        yield from (e for e in core.step() if e.request_id == request.request_id)


def generate(
    model: Transformer,
    prompt_ids: list[int],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    stop_ids: list[int] | None = None,
    seed: int | None = None,
) -> list[int]:
    """Completion token ids (greedy at temperature 0), ending with the stop token if one was produced."""
    params = SamplingParams(
        max_tokens=max_tokens, temperature=temperature, seed=seed, stop_token_ids=list(stop_ids or [])
    )
    return [e.token for e in stream(model, prompt_ids, params)]


def generate_batch(
    model: Transformer,
    prompts: list[list[int]],
    params: SamplingParams | Sequence[SamplingParams],
    core: EngineCore | None = None,
) -> list[list[int]]:
    """Several prompts through one engine with continuous batching; outputs in prompt order.

    `params`: one for all prompts, or one per prompt (say, each with its own grammar)."""
    core = core or EngineCore(model)
    each = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
    requests = [Request(f"batch-{next(_ids)}", list(p), q) for p, q in zip(prompts, each, strict=True)]
    for r in requests:
        core.add(r)
    while core.has_work:
        core.step()
    return [r.output for r in requests]


@dataclass
class ChatResult:
    prompt_ids: list[int]
    completion_ids: list[int]
    completion: Completion
    finish_reason: str | None  # stop | length | malformed_harmony


def chat(
    model: Transformer,
    messages: list[ChatMessage],
    params: SamplingParams,
    *,
    effort: str = "medium",
    tools: Sequence[Tool] = (),
    on_delta: Callable[[Delta], None] | None = None,
) -> ChatResult:
    """One harmony conversation turn, parsed as it streams (`on_delta` sees each piece of text).

    Output that breaks the harmony grammar (real models do it) is returned as raw final text with
    finish_reason "malformed_harmony" rather than raised.
    """
    prompt_ids = harmony.render_prompt(messages, effort=effort, tools=tools)
    if not params.stop_token_ids:
        params.stop_token_ids = harmony.stop_token_ids()
    parser = harmony.StreamParser()
    completion_ids: list[int] = []
    finish_reason = None
    try:
        for event in stream(model, prompt_ids, params):
            completion_ids.append(event.token)
            finish_reason = event.finish_reason or finish_reason
            delta = parser.feed(event.token)
            if delta is not None and on_delta is not None:
                on_delta(delta)
        completion = parser.finish()
    except harmony.MalformedHarmony:
        completion = Completion(final=harmony.decode(completion_ids))
        finish_reason = "malformed_harmony"
    return ChatResult(prompt_ids, completion_ids, completion, finish_reason)
