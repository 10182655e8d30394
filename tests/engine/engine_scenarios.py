"""Scenarios shared by the tests of the two async engines (thread and process)."""

from __future__ import annotations

import asyncio

from ossgate.engine.sampling import SamplingParams


async def cancel_then_follow(engine):
    """Stream 3 tokens of an endless request, close the stream, wait for its slot, run another request.

    Returns the stats once the first request is gone and the second request's events.
    """
    stream = await engine.generate(list(range(10, 30)), SamplingParams(max_tokens=10_000, temperature=0))
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    await stream.aclose()
    for _ in range(500):  # the abort lands before the engine's next step (a deadline, not a timing)
        stats = engine.stats()
        if stats.running == 0:
            break
        await asyncio.sleep(0.01)
    # the one slot is free: a new request runs to completion
    follow = await engine.generate(list(range(40, 50)), SamplingParams(max_tokens=5, temperature=0))
    return stats, [e async for e in follow]
