"""The held-out scorer, fed the generator's own reference answers and corrupted copies of them (no model)."""

from __future__ import annotations

import json
from dataclasses import replace

from ossgate.harmony import ChatMessage
from ossgate.nano import data
from ossgate.nano import evaluate as ev


def _reference(case: ev.Case, change=lambda m: m) -> list[int]:
    """What a perfect model writes for the case: the conversation's own assistant turn, through `change`."""
    turns = [m for m in case.sample.messages if m.role == "assistant"]
    return data.completion_tokens(change(turns[0] if case.stage == "first" else turns[-1]))


def test_reference_answers_pass_every_threshold():
    cases = ev.build_cases(40)
    report = ev.score(cases, [_reference(c) for c in cases])
    assert report.ok, {k: report.metrics.get(k) for k, ok in report.passed.items() if not ok}
    assert all(v == 1.0 for v in report.metrics.values()), report.metrics
    assert report.analysis_chars["low"] < report.analysis_chars["medium"] < report.analysis_chars["high"]


def test_wrong_sums_and_misspelt_operands_are_scored_as_such():
    cases = [c for c in ev.build_cases(20) if c.sample.kind == "arithmetic" and c.stage == "first"]

    def wrong_answer(m: ChatMessage) -> ChatMessage:
        return replace(m, content=m.content.replace(str(answer_of(m)), str(answer_of(m) + 1)))

    def answer_of(m: ChatMessage) -> int:
        return int(m.content.rstrip(".").rsplit(" ", 1)[1])

    def misspelt(m: ChatMessage) -> ChatMessage:
        return replace(m, reasoning=m.reasoning.replace(" is ", " is not ", 1))

    wrong = ev.score(cases, [_reference(c, wrong_answer) for c in cases])
    assert wrong.metrics["arithmetic_exact"] == 0.0 and wrong.metrics["arithmetic_operands_spelt"] == 1.0
    spelt = ev.score(cases, [_reference(c, misspelt) for c in cases])
    assert spelt.metrics["arithmetic_exact"] == 1.0 and spelt.metrics["arithmetic_operands_spelt"] == 0.0


def test_a_wrong_tool_a_missing_citation_and_a_cut_off_answer_fail():
    cases = ev.build_cases(20)
    first_tool = next(c for c in cases if c.sample.kind == "tool" and c.sample.meta.get("tool") and c.stage == "first")
    grounded = next(c for c in cases if c.sample.kind == "grounded" and c.sample.meta["answerable"])
    others = [t.name for t in first_tool.sample.tools if t.name != first_tool.sample.meta["tool"]]
    other = others[0] if others else "not_declared"

    def rename(m: ChatMessage) -> ChatMessage:
        return replace(m, tool_calls=[replace(m.tool_calls[0], name=other)])

    def uncited(m: ChatMessage) -> ChatMessage:
        return replace(m, content=m.content.replace(f"[{grounded.sample.meta['cite']}]", ""))

    report = ev.score(
        [first_tool, grounded, grounded],
        [_reference(first_tool, rename), _reference(grounded, uncited), _reference(grounded)[:-1]],
    )
    assert report.metrics["tool_right"] == 0.0
    assert report.metrics["grounded_exact"] == 0.5  # the uncited answer fails; the cut-off one still holds the span
    assert report.metrics["format_valid"] == 2 / 3  # the cut-off one never stops


def test_a_formatted_answer_must_be_json_of_the_schema_holding_the_answer():
    cases = [c for c in ev.build_cases(40) if c.sample.kind == "formatted"]
    assert cases

    def answered(case: ev.Case, content) -> list[int]:
        answer = case.sample.meta["answer"]
        return _reference(case, lambda m: replace(m, content=content(answer)))

    assert ev.score(cases, [_reference(c) for c in cases]).metrics["formatted_exact"] == 1.0
    text = ev.score(cases, [answered(c, lambda n: f"The answer is {n}.") for c in cases])
    assert text.metrics["formatted_json_valid"] == 0.0 and not text.passed["formatted_json_valid"]
    schema_bound = [c for c in cases if "properties" in c.sample.response_format.schema]
    wrong_key = ev.score(schema_bound, [answered(c, lambda n: json.dumps({"nope": n})) for c in schema_bound])
    assert wrong_key.metrics["formatted_exact"] == 0.0


def test_a_tool_listing_must_copy_every_name_and_description():
    cases = [c for c in ev.build_cases(40) if c.sample.kind == "tool_list"]
    assert cases and any(c.held_out for c in cases)
    perfect = ev.score(cases, [_reference(c) for c in cases])
    assert perfect.metrics["tool_list_exact"] == perfect.metrics["tool_list_names"] == 1.0

    def misnamed(m: ChatMessage) -> ChatMessage:  # the first name loses its last character
        head, first, *rest = m.content.split("\n")
        name, desc = first.split(": ", 1)
        return replace(m, content="\n".join([head, f"{name[:-1]}: {desc}", *rest]))

    wrong = ev.score(cases, [_reference(c, misnamed) for c in cases])
    assert wrong.metrics["tool_list_exact"] == wrong.metrics["tool_list_names"] == 0.0
    assert all(f["kind"] == "tool_list" for f in wrong.failures)
