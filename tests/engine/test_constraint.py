"""Grammar-constrained decoding: the harmony turn grammar (ossgate/structured.py) and the engine's mask."""

from __future__ import annotations

import json

import pytest
import torch

from ossgate import harmony, structured
from ossgate.engine.constraint import Constraint
from ossgate.engine.generate import generate_batch
from ossgate.engine.sampling import SamplingParams
from ossgate.errors import InvalidRequest
from ossgate.harmony import Tool

WEATHER = Tool(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]},
)
ORDER = Tool("lookup_order", "Look up an order", {"type": "object", "properties": {"order_id": {"type": "string"}}})


def tokens(text: str) -> list[int]:
    return harmony.encoding().encode(text, allowed_special="all")


def follows(grammar: str, text: str) -> bool:
    """Whether the grammar lets the model write `text` token by token."""
    c = Constraint(grammar)
    try:
        for t in tokens(text):
            c.advance(t)
    except ValueError:
        return False
    return True


CALL = '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>'
# the recipient in the role section, as openai-harmony renders a call (and gpt-oss-nano writes one)
ROLE_CALL = ' to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"city": "Paris"}<|call|>'
ANALYSIS = "<|channel|>analysis<|message|>The user wants the weather.<|end|><|start|>assistant"
FINAL = "<|channel|>final<|message|>It is sunny.<|return|>"


def test_a_call_to_a_declared_tool_with_valid_arguments_follows_the_grammar():
    g = structured.turn_grammar([WEATHER, ORDER])
    assert follows(g, ANALYSIS + CALL)
    assert follows(g, ANALYSIS + FINAL)
    assert follows(g, CALL.replace("get_weather", "lookup_order").replace('"city": "Paris"', '"order_id": "7"'))
    assert follows(g, ANALYSIS + ROLE_CALL)
    assert follows(g, ROLE_CALL.replace("get_weather", "lookup_order").replace('"city": "Paris"', '"order_id": "7"'))


def test_the_grammar_accepts_the_call_exactly_as_harmony_renders_it():
    call = harmony.ChatMessage(
        "assistant", "", tool_calls=[harmony.ToolCall(name="get_weather", arguments='{"city": "Paris"}')]
    )
    rendered = harmony.encoding().decode(harmony.encoding().render(next(iter(harmony._history([call])))))
    head = "<|start|>assistant"
    assert rendered.startswith(head)
    assert follows(structured.turn_grammar([WEATHER, ORDER]), rendered[len(head) :].replace("<|end|>", "<|call|>"))


@pytest.mark.parametrize(
    "bad",
    [
        CALL.replace("get_weather", "get_wether"),  # undeclared name
        ROLE_CALL.replace("get_weather", "get_wether"),
        ROLE_CALL.replace('"city"', '"town"'),
        CALL.replace('"city"', '"town"'),  # a parameter the tool does not declare
        CALL.replace('{"city": "Paris"}', '{"unit": "c"}'),  # the required one missing
        CALL.replace('"Paris"}', '"Paris", "unit": "k"}'),  # outside the enum
        CALL.replace('{"city": "Paris"}', "city=Paris"),  # not JSON
    ],
)
def test_calls_outside_the_declarations_do_not(bad):
    assert not follows(structured.turn_grammar([WEATHER, ORDER]), ANALYSIS + bad)


def test_tool_choice_required_forbids_a_final_answer():
    g = structured.turn_grammar([WEATHER], require_call=True)
    assert follows(g, ANALYSIS + CALL)
    assert not follows(g, ANALYSIS + FINAL)


def test_response_format_holds_the_final_answer_to_the_schema():
    g = structured.turn_grammar(final_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    assert follows(g, ANALYSIS + '<|channel|>final<|message|>{"n": 42}<|return|>')
    assert not follows(g, ANALYSIS + FINAL)
    assert not follows(g, ANALYSIS + CALL)  # no tools declared: no call


def test_no_tools_and_no_format_means_no_grammar():
    assert structured.turn_grammar() is None


def test_the_mask_leaves_only_declared_names_after_the_recipient_prefix():
    c = Constraint(structured.turn_grammar([WEATHER, ORDER]))
    for t in tokens("<|channel|>commentary to=functions."):
        c.advance(t)
    logits = torch.zeros(201088)
    c.mask(logits)
    allowed = torch.isfinite(logits).nonzero().flatten().tolist()
    texts = {harmony.encoding().decode([t]) for t in allowed}
    assert texts and all("get_weather".startswith(x) or "lookup_order".startswith(x) for x in texts)


def test_closed_forbids_unlisted_properties_at_every_level():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
        "$defs": {"x": {"type": "object", "properties": {}}},
    }
    out = structured.closed(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["a"]["additionalProperties"] is False
    assert out["$defs"]["x"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the caller's schema is left as it was
    open_map = {"type": "object", "additionalProperties": {"type": "string"}}
    assert structured.closed(open_map) == open_map


def test_a_response_schema_that_cannot_compile_is_a_bad_request():
    with pytest.raises(InvalidRequest) as e:
        structured.check_schema({"type": "object", "minProperties": "two"}, "response_format.json_schema.schema")
    assert e.value.param == "response_format.json_schema.schema"
    structured.check_schema({"type": "object", "properties": {"n": {"type": "integer"}}}, "p")  # a good one passes


def test_a_tool_schema_the_compiler_rejects_still_gets_json_arguments():
    odd = Tool("odd", "", {"type": "object", "minProperties": "two"})
    g = structured.turn_grammar([odd])
    assert follows(g, CALL.replace("get_weather", "odd").replace('"city": "Paris"', '"any": 1'))
    assert not follows(g, CALL.replace("get_weather", "odd").replace('{"city": "Paris"}', "nope"))


def test_the_engine_decodes_a_random_model_into_the_grammar(tiny_model):
    """Random weights write noise; under the forced tool's grammar they must still write a valid call."""
    tool = Tool("pick", "", {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"]})
    prompt = harmony.render_prompt([harmony.ChatMessage("user", "hi")], tools=[tool]) + tokens(
        "<|channel|>commentary to=functions.pick <|constrain|>json<|message|>"
    )
    free = SamplingParams(max_tokens=40, temperature=0.0, stop_token_ids=harmony.stop_token_ids())
    bound = SamplingParams(**{**free.__dict__, "grammar": structured.turn_grammar([tool], forced_tool=tool)})
    sampled = SamplingParams(**{**bound.__dict__, "temperature": 1.0, "seed": 3})
    out_free, out_bound, out_sampled = generate_batch(tiny_model, [prompt] * 3, [free, bound, sampled])
    assert out_free[-1:] != [harmony.special_token_id("<|call|>")]  # noise, as expected of random weights
    for out in (out_bound, out_sampled):
        assert out[-1] == harmony.special_token_id("<|call|>")
        assert json.loads(harmony.encoding().decode(out[:-1])) in ({"unit": "c"}, {"unit": "f"})
