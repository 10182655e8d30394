"""The engine against the model's own no-cache forward pass, and the scheduler's promises."""

import asyncio

import pytest
import torch
from engine_scenarios import cancel_then_follow

from ossgate.engine.async_engine import AsyncEngine
from ossgate.engine.core import EngineConfig, EngineCore
from ossgate.engine.generate import generate_batch
from ossgate.engine.request import Request, Status
from ossgate.engine.sampling import SamplingParams
from ossgate.errors import ContextOverflow


def greedy_without_cache(model, prompt, n):
    seq, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits = model.logits(model(torch.tensor(seq), torch.arange(len(seq))))[-1]
            out.append(int(logits.argmax()))
            seq.append(out[-1])
    return out


def test_cached_batched_decoding_equals_full_forward(tiny_model):
    """Sequences of different lengths, crossing the sliding window, joining and leaving mid-way, chunked prefill."""
    w = tiny_model.config.sliding_window
    prompts = [list(range(100, 100 + n)) for n in (3, w - 1, w + 1, 5 * w + 3)]
    lengths = [4 * w, 7, 2 * w, 3 * w]  # the short one leaves early; later ones join when a slot frees
    core = EngineCore(tiny_model, EngineConfig(max_running=2, max_tokens_per_step=w + 2))
    requests = [
        Request(f"r{i}", p, SamplingParams(max_tokens=n, temperature=0))
        for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))
    ]
    for r in requests:
        core.add(r)
    peak_running = 0
    while core.has_work:
        core.step()
        peak_running = max(peak_running, len(core.scheduler.running))
    assert peak_running == 2
    for r, p, n in zip(requests, prompts, lengths, strict=True):
        assert r.output == greedy_without_cache(tiny_model, p, n), r.request_id


def test_prefix_reuse_gives_the_same_tokens(tiny_model):
    from ossgate import harmony

    messages = [harmony.ChatMessage("system", "You answer from the sources. " * 5)]
    a = harmony.render_prompt(messages + [harmony.ChatMessage("user", "first question")])
    b = harmony.render_prompt(messages + [harmony.ChatMessage("user", "a different one")])
    core = EngineCore(tiny_model, EngineConfig(max_running=1))
    params = SamplingParams(max_tokens=6, temperature=0)
    first = generate_batch(tiny_model, [a], params, core)
    second = generate_batch(tiny_model, [b], params, core)
    assert core.prefix_cache.hits == 1 and core.prefix_cache.hit_tokens > 20
    assert second == [greedy_without_cache(tiny_model, b, 6)]
    assert first == [greedy_without_cache(tiny_model, a, 6)]


def test_same_seed_same_sample_and_no_cross_talk(tiny_model):
    prompt = list(range(300, 320))
    sampled = SamplingParams(max_tokens=12, temperature=1.0, seed=7)
    alone = generate_batch(tiny_model, [prompt], sampled)[0]
    with_others = generate_batch(
        tiny_model, [list(range(5, 40)), prompt, list(range(900, 905))],
        SamplingParams(max_tokens=12, temperature=1.0, seed=7),
    )[1]  # fmt: skip
    other_seed = generate_batch(tiny_model, [prompt], SamplingParams(max_tokens=12, temperature=1.0, seed=8))[0]
    assert alone == with_others
    assert alone != other_seed


def test_prompt_longer_than_context_is_rejected(tiny_model):
    core = EngineCore(tiny_model, EngineConfig(max_context=64))
    with pytest.raises(ContextOverflow, match="context is 64 tokens"):
        core.add(Request("long", list(range(100)), SamplingParams(max_tokens=1)))


def test_kv_budget_queues_then_rejects_what_never_fits(tiny_model):
    probe = EngineCore(tiny_model)
    budget = probe.budget.cost(100) + probe.budget.cost(100) // 2  # room for one 100-token sequence at a time
    core = EngineCore(tiny_model, EngineConfig(kv_budget_bytes=budget))
    with pytest.raises(ContextOverflow, match="exceeds the KV-cache budget"):
        core.add(Request("huge", list(range(50)), SamplingParams(max_tokens=1000)))
    a = Request("a", list(range(60)), SamplingParams(max_tokens=40, temperature=0))
    b = Request("b", list(range(60)), SamplingParams(max_tokens=40, temperature=0))
    core.add(a)
    core.add(b)
    core.step()
    assert a.status == Status.RUNNING and b.status == Status.WAITING  # queued, not failed
    while core.has_work:
        core.step()
    assert len(a.output) == len(b.output) == 40


def test_cancel_frees_the_slot_at_once(tiny_model):
    engine = AsyncEngine(EngineCore(tiny_model, EngineConfig(max_running=1)))

    try:
        stats, events = asyncio.run(cancel_then_follow(engine))
    finally:
        engine.shutdown()
    assert stats.running == 0 and stats.kv_usage == 0
    assert len(events) == 5 and events[-1].finish_reason == "length"


def test_stop_token_ends_the_request(tiny_model):
    prompt = list(range(100, 120))
    free = greedy_without_cache(tiny_model, prompt, 5)
    out = generate_batch(tiny_model, [prompt], SamplingParams(max_tokens=50, temperature=0, stop_token_ids=[free[2]]))[
        0
    ]
    assert out == free[:3]


def test_logprobs_are_reported(tiny_model):
    core = EngineCore(tiny_model)
    r = Request("lp", list(range(10, 20)), SamplingParams(max_tokens=2, temperature=0, logprobs=3))
    core.add(r)
    events = []
    while core.has_work:
        events += core.step()
    assert len(events[0].top_logprobs) == 3
    assert events[0].top_logprobs[0][0] == events[0].token  # greedy = the most likely
    assert events[0].logprob == pytest.approx(events[0].top_logprobs[0][1])


def test_prefix_boundary_ends_after_the_developer_message():
    from ossgate import harmony
    from ossgate.engine.core import harmony_prefix_boundary

    with_dev = harmony.render_prompt([harmony.ChatMessage("system", "Be brief."), harmony.ChatMessage("user", "hi")])
    tail = harmony.decode(with_dev[harmony_prefix_boundary(with_dev) :])
    assert tail == "<|start|>user<|message|>hi<|end|><|start|>assistant"
    no_dev = harmony.render_prompt([harmony.ChatMessage("user", "hi")])
    assert harmony.decode(no_dev[: harmony_prefix_boundary(no_dev)]).startswith("<|start|>system")
    assert harmony.decode(no_dev[harmony_prefix_boundary(no_dev) :]) == tail
