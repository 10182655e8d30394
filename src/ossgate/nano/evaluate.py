"""Held-out evaluation of gpt-oss-nano: fresh conversations from another seed, greedy generation, scored.

Every metric is computed from the harmony-parsed completion, as a client of the server would see it:

- format: the completion parses as harmony and ends with a stop token
- arithmetic: the last integer in the final answer equals the answer; separately, whether the analysis
  spells both operands by place right (most wrong sums went wrong there)
- tools: the call's JSON arguments are valid and conform to the declared schema; the right tool is
  called (or none, when no declared tool fits); separately for tool declarations held out of training;
  after the tool's output, the final answer reports it
- tool listing: asked which tools it has, the final lists every declared name and description as declared
- grounded: the answer contains the passage's value and cites the right [n]; abstains when no passage has it
- analysis length (characters) by reasoning effort, which must grow low < medium < high (a mean per skill,
  averaged over the skills)
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from ossgate.engine.generate import generate_batch
from ossgate.engine.sampling import SamplingParams
from ossgate.harmony import Completion, MalformedHarmony, parse_completion, stop_token_ids
from ossgate.model.transformer import Transformer
from ossgate.nano import data
from ossgate.nano.tools import schema_conforms
from ossgate.structured import turn_grammar

EVAL_SEED = 20250805  # differs from every training seed
THRESHOLDS = {
    "format_valid": 0.99,
    "arithmetic_exact": 0.95,
    "tool_json_valid": 0.98,
    "formatted_json_valid": 0.98,
    "tool_right": 0.95,
    "tool_right_held_out": 0.95,
    "grounded_exact": 0.90,
    "grounded_abstain": 0.90,
}


@dataclass
class Case:
    """One prompt to complete and how to score it."""

    sample: data.Sample
    prompt: list[int]
    stage: str  # "first" (the first assistant turn) or "after_tool" (the answer after the tool's output)
    held_out: bool = False


@dataclass
class Report:
    metrics: dict[str, float]
    counts: dict[str, int]
    analysis_chars: dict[str, float]
    passed: dict[str, bool]
    failures: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(self.passed.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def build_cases(n: int, seed: int = EVAL_SEED) -> list[Case]:
    """`n` conversations per skill: arithmetic, tools (seen), tools (held out), grounded (half abstain), others."""
    rng = random.Random(seed)
    cases: list[Case] = []

    def add(s: data.Sample, held_out: bool = False) -> None:
        cases.append(Case(s, data.prompt_tokens(s), "first", held_out))
        if s.kind == "tool" and s.meta.get("tool"):
            # second turn: the reference call and tool output are in the history, the model answers
            prompt = s.prompt(s.messages[:3])
            cases.append(Case(s, prompt, "after_tool", held_out))

    for _ in range(n):
        add(data.sample(rng, "arithmetic"))
    for _ in range(n):
        add(data.sample(rng, "tool"))
    for _ in range(n):
        add(data.sample(rng, "tool", held_out=True), held_out=True)
    for i in range(n):
        add(data.sample(rng, "grounded", answerable=i % 2 == 0))
    for i in range(max(2, n // 4)):
        add(data.sample(rng, "greeting" if i % 2 == 0 else "refusal"))
    for _ in range(max(2, n // 4)):  # drawn last, so the cases above stay the ones earlier versions were scored on
        add(data.sample(rng, "formatted"))
    for i in range(max(2, n // 4)):  # after the formatted ones, which v0.8 was scored on
        add(data.sample(rng, "tool_list", held_out=i % 2 == 1), held_out=i % 2 == 1)
    return cases


_INT = re.compile(r"-?\d+")


def _last_int(text: str) -> int | None:
    found = _INT.findall(text.replace(",", ""))
    return int(found[-1]) if found else None


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _abstains(final: str) -> bool:
    return "don't know" in final.lower() or "no lo sé" in final.lower()


def score(cases: list[Case], outputs: list[list[int]]) -> Report:
    """Score completions (token ids after `<|start|>assistant`) against their cases."""
    stops = set(stop_token_ids())
    hits: dict[str, list[bool]] = defaultdict(list)
    chars: dict[tuple[str, str], list[int]] = defaultdict(list)
    failures = []
    for case, out in zip(cases, outputs, strict=True):
        s = case.sample
        try:
            done = parse_completion(out)
            valid = bool(out) and out[-1] in stops
        except MalformedHarmony:
            done, valid = Completion(), False
        hits["format_valid"].append(valid)
        if case.stage == "first":
            chars[(s.kind, s.effort)].append(len(done.analysis))
        ok = _score_one(case, done, hits)
        if not (ok and valid):
            failures.append(
                {
                    "kind": s.kind,
                    "stage": case.stage,
                    "effort": s.effort,
                    "user": s.prompt_messages()[-1].content,
                    "expected": s.meta,
                    "analysis": done.analysis,
                    "final": done.final,
                    "calls": [asdict(c) for c in done.tool_calls],
                }
            )
    metrics = {k: sum(v) / len(v) for k, v in hits.items() if v}
    analysis = _analysis_by_effort(chars)
    passed = {k: metrics.get(k, 0.0) >= t for k, t in THRESHOLDS.items() if k in metrics}
    if analysis:  # all three efforts, or none
        passed["analysis_length_increasing"] = analysis["low"] < analysis["medium"] < analysis["high"]
    return Report(metrics, {k: len(v) for k, v in hits.items()}, analysis, passed, failures)


def _analysis_by_effort(chars: dict[tuple[str, str], list[int]]) -> dict[str, float]:
    """Mean analysis length at each effort, averaged over the skills drawn at all three efforts.

    Skills differ in length far more than efforts do (a column sum against "Harmful request; refuse."), so a
    plain mean by effort mostly measures which skills the draw happened to put at each effort.
    """
    kinds = {k for k, _ in chars}
    complete = [k for k in sorted(kinds) if all(chars.get((k, e)) for e in data.EFFORTS)]
    if not complete:
        return {}
    return {e: sum(sum(chars[k, e]) / len(chars[k, e]) for k in complete) / len(complete) for e in data.EFFORTS}


def _score_one(case: Case, done: Completion, hits: dict[str, list[bool]]) -> bool:
    s = case.sample
    if case.stage == "after_tool":
        ok = not done.tool_calls and s.meta["answer"] in done.final
        hits["tool_answer_uses_output"].append(ok)
        return ok
    if s.kind == "arithmetic":
        ok = _last_int(done.final) == s.meta["answer"] and not done.tool_calls
        hits["arithmetic_exact"].append(ok)
        # where a wrong sum goes wrong: reading the operands' digits out of their tokens, or the steps after
        a, op, b = s.meta["operands"]
        hits["arithmetic_operands_spelt"].append(data.spelt_operands(op, a, b) in done.analysis)
        if "tool" in s.meta:
            hits["tool_right_held_out" if case.held_out else "tool_right"].append(not done.tool_calls)
        return ok
    if s.kind == "formatted":
        valid = _json_object(done.final) and (  # json_object's `{"type": "object"}` takes any keys
            "properties" not in s.meta["schema"] or schema_conforms(done.final, s.meta["schema"])
        )
        hits["formatted_json_valid"].append(valid)
        ok = valid and not done.tool_calls and json.loads(done.final).get(s.meta["key"]) == s.meta["answer"]
        hits["formatted_exact"].append(ok)
        return ok
    if s.kind == "tool_list":
        ok = done.final == s.meta["answer"] and not done.tool_calls
        hits["tool_list_exact"].append(ok)
        # each declared name copied whole, whatever happened to the descriptions
        hits["tool_list_names"].append(all(f"- {t.name}: " in done.final for t in s.tools))
        return ok
    if s.kind == "tool" or "tool" in s.meta:
        expected = s.meta.get("tool")
        called = done.tool_calls[0].name if done.tool_calls else None
        right = called == expected and len(done.tool_calls) <= 1
        hits["tool_right_held_out" if case.held_out else "tool_right"].append(right)
        for call in done.tool_calls:
            tool = next((t for t in s.tools if t.name == call.name), None)
            hits["tool_json_valid"].append(tool is not None and schema_conforms(call.arguments, tool.parameters or {}))
        if expected and called == expected:
            hits["tool_arguments_exact"].append(
                json.loads(done.tool_calls[0].arguments or "null") == json.loads(s.meta["arguments"])
                if schema_conforms(done.tool_calls[0].arguments, s.meta["schema"])
                else False
            )
        return right
    if s.kind == "grounded":
        if s.meta["answerable"]:
            ok = s.meta["value"] in done.final and f"[{s.meta['cite']}]" in done.final
            hits["grounded_exact"].append(ok)
        else:
            ok = _abstains(done.final)
            hits["grounded_abstain"].append(ok)
        return ok
    if s.kind == "greeting":
        ok = "gpt-oss-nano" in done.final
        hits["identity"].append(ok)
        return ok
    ok = done.final == data.REFUSE[s.lang]
    hits["refusal"].append(ok)
    return ok


def run(model: Transformer, n: int, seed: int = EVAL_SEED, max_tokens: int = 400, structured: bool = False) -> Report:
    """Generate greedily for every case (continuous batching on the engine) and score.

    `structured`: decode as `ossgate serve` does, under the turn grammar of the case's tools (calls only to
    declared tools, arguments that match their schema); off, the figures are the model's own.
    """
    cases = build_cases(n, seed)
    params = [
        SamplingParams(
            max_tokens=max_tokens,
            temperature=0.0,
            stop_token_ids=stop_token_ids(),
            grammar=turn_grammar(c.sample.tools, final_schema=_schema(c.sample)) if structured else None,
        )
        for c in cases
    ]
    outputs = generate_batch(model, [c.prompt for c in cases], params)
    return score(cases, outputs)


def _schema(s: data.Sample) -> dict | None:
    return s.response_format.schema if s.response_format else None


def table(report: Report) -> str:
    """The report as a Markdown table."""
    rows = ["| metric | value | n | threshold | pass |", "|---|---|---|---|---|"]
    for k, v in report.metrics.items():
        t = THRESHOLDS.get(k)
        mark = ("yes" if report.passed[k] else "NO") if k in report.passed else ""
        rows.append(f"| {k} | {v:.1%} | {report.counts[k]} | {'≥ ' + format(t, '.0%') if t else ''} | {mark} |")
    lengths = " < ".join(f"{e} {report.analysis_chars[e]:.0f}" for e in report.analysis_chars)
    mark = "yes" if report.passed.get("analysis_length_increasing") else "NO"
    rows.append(f"| analysis chars by effort | {lengths} | | low < medium < high | {mark} |")
    return "\n".join(rows)
