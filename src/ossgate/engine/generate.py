"""One-shot generation on the engine (CLI, evaluation, scripts): no server, no threads."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from ossgate.engine.core import EngineConfig, EngineCore
from ossgate.engine.request import Request, TokenEvent
from ossgate.engine.sampling import SamplingParams
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
    model: Transformer, prompts: list[list[int]], params: SamplingParams, core: EngineCore | None = None
) -> list[list[int]]:
    """Several prompts through one engine with continuous batching; outputs in prompt order."""
    core = core or EngineCore(model)
    requests = [Request(f"batch-{next(_ids)}", list(p), params) for p in prompts]
    for r in requests:
        core.add(r)
    while core.has_work:
        core.step()
    return [r.output for r in requests]
