"""The engine in its own process (ProcessEngine) against the in-process AsyncEngine: same tokens, same
promises (cancel frees the slot, shutdown ends streams with 'abort'), and a clear error when the process dies."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from engine_scenarios import cancel_then_follow

from ossgate.engine.async_engine import AsyncEngine
from ossgate.engine.core import EngineConfig, EngineCore
from ossgate.engine.engine_process import EngineSpec, ProcessEngine
from ossgate.engine.sampling import SamplingParams
from ossgate.errors import ContextOverflow, EngineUnavailable

PROMPTS = [list(range(10, 10 + n)) for n in (3, 17, 40)]


def spec(checkpoint, **config) -> EngineSpec:
    return EngineSpec(checkpoint, dtype="float32", config=EngineConfig(**config), torch_threads=1)


async def run_all(engine, params: SamplingParams) -> list[list[tuple[int, float, str | None]]]:
    async def one(prompt):
        stream = await engine.generate(prompt, params)
        return [(e.token, e.logprob, e.finish_reason) async for e in stream]

    return list(await asyncio.gather(*(one(p) for p in PROMPTS)))


def test_greedy_tokens_equal_the_in_process_engine(tiny_checkpoint, tiny_model):
    params = SamplingParams(max_tokens=12, temperature=0, logprobs=2)
    thread = AsyncEngine(EngineCore(tiny_model, EngineConfig()))
    try:
        expected = asyncio.run(run_all(thread, params))
    finally:
        thread.shutdown()

    async def scenario():
        engine = ProcessEngine(spec(tiny_checkpoint))
        await engine.start()
        try:
            got = await run_all(engine, params)
            score = await engine.score(PROMPTS[1], 3)
            return got, score, engine.stats()
        finally:
            await engine.aclose()

    got, score, stats = asyncio.run(scenario())
    assert [[(t, r) for t, _, r in g] for g in got] == [[(t, r) for t, _, r in g] for g in expected]
    assert [lp for g in got for _, lp, _ in g] == pytest.approx([lp for g in expected for _, lp, _ in g], abs=1e-4)
    assert all(len(g) == 12 and g[-1][2] == "length" for g in got)
    assert stats.tokens_generated == 36 and stats.running == 0
    assert score[0] is None and len(score) == len(PROMPTS[1])
    assert [s[0] for s in score[1:]] == PROMPTS[1][1:] and all(len(s[2]) == 3 for s in score[1:])


def test_validation_errors_raise_before_streaming(tiny_checkpoint):
    async def scenario():
        engine = ProcessEngine(spec(tiny_checkpoint, max_context=64))
        await engine.start()
        try:
            with pytest.raises(ContextOverflow):
                await engine.generate(list(range(10, 80)), SamplingParams(max_tokens=2))
        finally:
            await engine.aclose()

    asyncio.run(scenario())


def test_cancel_frees_the_slot_at_once(tiny_checkpoint):
    async def scenario():
        engine = ProcessEngine(spec(tiny_checkpoint, max_running=1))
        await engine.start()
        try:
            return await cancel_then_follow(engine)
        finally:
            await engine.aclose()

    stats, events = asyncio.run(scenario())
    assert stats.running == 0 and stats.kv_usage == 0
    assert stats.tokens_generated < 10_000
    assert len(events) == 5 and events[-1].finish_reason == "length"


def test_shutdown_ends_running_streams_with_abort_and_the_process(tiny_checkpoint):
    async def scenario():
        engine = ProcessEngine(spec(tiny_checkpoint))
        await engine.start()
        stream = await engine.generate(list(range(10, 30)), SamplingParams(max_tokens=10_000, temperature=0))
        first = await anext(stream)
        closing = asyncio.create_task(engine.aclose())
        rest = [e async for e in stream]
        await closing
        return engine, first, rest

    engine, first, rest = asyncio.run(scenario())
    assert first.token >= 0
    assert rest[-1].finish_reason == "abort" and rest[-1].token == -1
    assert engine.process.returncode == 0  # it exited by itself, not killed


def test_killed_engine_gives_a_clear_error_not_a_hang(tiny_checkpoint):
    async def scenario():
        engine = ProcessEngine(spec(tiny_checkpoint))
        await engine.start()
        try:
            stream = await engine.generate(list(range(10, 30)), SamplingParams(max_tokens=10_000, temperature=0))
            await anext(stream)
            os.kill(engine.pid, signal.SIGKILL)
            with pytest.raises(EngineUnavailable) as during:
                async with asyncio.timeout(60):
                    async for _ in stream:
                        pass
            with pytest.raises(EngineUnavailable) as after:
                await engine.generate([1, 2, 3], SamplingParams(max_tokens=2))
            return during.value, after.value, engine.alive
        finally:
            await engine.aclose()

    during, after, alive = asyncio.run(scenario())
    assert "engine process" in during.message and "signal 9" in during.message
    assert during.status == after.status == 503
    assert not alive


def test_a_checkpoint_that_fails_to_load_is_reported(tmp_path):
    async def scenario():
        engine = ProcessEngine(spec(tmp_path / "missing"))
        await engine.start()

    with pytest.raises(EngineUnavailable, match="failed to start"):
        asyncio.run(scenario())
