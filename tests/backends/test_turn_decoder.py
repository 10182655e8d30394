"""TurnDecoder: engine tokens -> OutputEvents, on hand-written harmony (what a trained model emits)."""

from __future__ import annotations

import pytest

from ossgate import harmony
from ossgate.backends.turn_decoder import StopMatcher, TurnDecoder
from ossgate.engine.request import TokenEvent


@pytest.fixture(autouse=True)
def _home(ossgate_home):
    return ossgate_home


def tokens(text: str) -> list[int]:
    return list(harmony.encoding().encode(text, allowed_special="all"))


def run(text: str, *, engine_reason: str = "stop", stops=(), prefill: str = "", logprobs: bool = False):
    decoder = TurnDecoder(100, tokens(prefill) if prefill else [], list(stops), logprobs)
    events = []
    for t in tokens(text):
        events += decoder.feed(TokenEvent("r", t, -0.5, [(t, -0.5)], 0.0))
        if decoder.stopped:
            engine_reason = "stop"
            break
    return events + decoder.finish(engine_reason)


def joined(events, kind):
    return "".join(e.text for e in events if e.kind == kind)


def test_reasoning_and_answer_are_split_by_channel():
    events = run(
        "<|channel|>analysis<|message|>User greets. Reply.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>"
    )
    assert joined(events, "reasoning") == "User greets. Reply."
    assert joined(events, "content") == "Hello there!"
    finish = events[-1]
    assert finish.kind == "finish" and finish.finish_reason == "stop"
    assert finish.usage.reasoning_tokens == len(tokens("User greets. Reply."))
    assert finish.usage.completion_tokens == len(
        tokens(
            "<|channel|>analysis<|message|>User greets. Reply.<|end|>"
            "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>"
        )
    )


def test_commentary_call_becomes_a_tool_call_not_content():
    events = run(
        "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>'
    )
    calls = [e for e in events if e.kind == "tool_call"]
    assert calls[0].tool_name == "get_weather" and calls[0].tool_id.startswith("call_") and calls[0].tool_index == 0
    assert all(c.tool_name is None for c in calls[1:])
    assert "".join(c.text for c in calls) == '{"city":"Paris"}'
    assert joined(events, "content") == ""
    assert events[-1].finish_reason == "tool_calls"


def test_forced_call_prefill_opens_the_call():
    events = run(
        '{"city":"Rome"}<|call|>', prefill="<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
    )
    calls = [e for e in events if e.kind == "tool_call"]
    assert calls[0].tool_name == "get_weather"
    assert "".join(c.text for c in calls) == '{"city":"Rome"}'
    assert events[-1].finish_reason == "tool_calls"


def test_stop_string_cuts_the_answer_even_across_tokens():
    events = run("<|channel|>final<|message|>one two STOP three four<|return|>", stops=["STOP"], engine_reason="length")
    assert joined(events, "content") == "one two "
    assert events[-1].finish_reason == "stop"
    held = run("<|channel|>final<|message|>one two ST<|return|>", stops=["STOP"])
    assert joined(held, "content") == "one two ST"  # a prefix held back is released at the end


def test_malformed_harmony_comes_back_as_content():
    events = run("<|channel|>final<|message|>hi<|end|>then plain text without a header")
    assert joined(events, "content") == "hithen plain text without a header"
    assert events[-1].finish_reason == "malformed_harmony"


def test_cut_off_mid_header_returns_the_text():
    events = run("<|channel|>analysis and more header words", engine_reason="length")
    assert "analysis and more header words" in joined(events, "content")
    assert events[-1].finish_reason == "length"


def test_logprobs_follow_content_tokens():
    events = run("<|channel|>final<|message|>Hello there<|return|>", logprobs=True)
    entries = [lp for e in events if e.kind == "content" for lp in e.logprobs or []]
    assert "".join(lp.token for lp in entries) == "Hello there"
    assert all(lp.logprob == -0.5 and lp.top[0][1] == -0.5 for lp in entries)


@pytest.mark.parametrize(
    ("chunks", "stops", "out", "stopped"),
    [
        (["ab", "cd"], [], "abcd", False),
        (["hello wor", "ld"], ["world"], "hello ", True),
        (["x<", "|", "y"], ["<|end"], "x<|y", False),
        (["one", "\n\n", "two"], ["\n\n"], "one", True),
    ],
)
def test_stop_matcher(chunks, stops, out, stopped):
    m = StopMatcher(stops)
    text = ""
    for c in chunks:
        text += m.push(c)
        if m.stopped:
            break
    text += m.flush()
    assert (text, m.stopped) == (out, stopped)
