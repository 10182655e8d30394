import json

import pytest

from ossgate import harmony
from ossgate.harmony import ChatMessage, ResponseFormat, Tool, ToolCall

WEATHER = Tool("get_weather", "Current weather for a city", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
})  # fmt: skip


def test_render_puts_effort_in_system_and_instructions_in_developer():
    ids = harmony.render_prompt([ChatMessage("system", "Answer briefly."), ChatMessage("user", "Hi")], effort="high")
    text = harmony.decode(ids)
    assert "Reasoning: high" in text
    assert "<|start|>developer<|message|># Instructions\n\nAnswer briefly." in text
    assert text.endswith("<|start|>user<|message|>Hi<|end|><|start|>assistant")


def test_render_declares_function_tools():
    text = harmony.decode(harmony.render_prompt([ChatMessage("user", "Weather in Oslo?")], tools=[WEATHER]))
    assert "namespace functions" in text and "type get_weather = (_: {" in text
    assert "commentary" in text  # tools imply the commentary channel


SUM = ResponseFormat("sum", {"type": "object", "properties": {"answer": {"type": "integer"}}}, "The sum.")
SUM_SECTION = (
    '# Response Formats\n\n## sum\n\n// The sum.\n{"type":"object","properties":{"answer":{"type":"integer"}}}'
)


def test_response_format_is_the_last_section_of_the_developer_message():
    # the harmony spec's structured-output section: after instructions and tools, just before <|end|>
    messages = [ChatMessage("system", "Answer briefly."), ChatMessage("user", "2+2?")]
    text = harmony.decode(harmony.render_prompt(messages, tools=[WEATHER], response_format=SUM))
    developer = text.split("<|start|>developer<|message|>")[1].split("<|end|>")[0]
    assert developer.startswith("# Instructions\n\nAnswer briefly.\n\n# Tools")
    assert developer.endswith("} // namespace functions\n\n" + SUM_SECTION)


def test_a_response_format_alone_makes_the_developer_message():
    alone = harmony.decode(harmony.render_prompt([ChatMessage("user", "2+2?")], response_format=SUM))
    assert f"<|start|>developer<|message|>{SUM_SECTION}<|end|><|start|>user" in alone
    undescribed = harmony.decode(
        harmony.render_prompt([ChatMessage("user", "2+2?")], response_format=ResponseFormat("x", {"type": "object"}))
    )
    assert '## x\n\n{"type":"object"}<|end|>' in undescribed


def test_earlier_reasoning_is_dropped_after_a_final_answer():
    history = [
        ChatMessage("user", "2+2?"),
        ChatMessage("assistant", "4", reasoning="SECRET-REASONING"),
        ChatMessage("user", "and 3+3?"),
    ]
    text = harmony.decode(harmony.render_prompt(history))
    assert "SECRET-REASONING" not in text and "<|channel|>final<|message|>4<|end|>" in text


def test_tool_round_trip_history_renders():
    history = [
        ChatMessage("user", "Weather in Oslo?"),
        ChatMessage("assistant", tool_calls=[ToolCall("get_weather", '{"city":"Oslo"}')], reasoning="need weather"),
        ChatMessage("tool", '{"temp": 3}', name="get_weather"),
    ]
    text = harmony.decode(harmony.render_prompt(history, tools=[WEATHER]))
    assert 'to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"city":"Oslo"}<|call|>' in text
    assert '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temp": 3}<|end|>' in text
    assert "need weather" in text  # reasoning before a tool call is kept until the final answer


def test_unknown_role_and_effort_are_user_errors():
    with pytest.raises(harmony.InvalidRequest, match="unknown role"):
        harmony.render_prompt([ChatMessage("wizard", "x")])
    with pytest.raises(harmony.InvalidRequest, match="reasoning_effort"):
        harmony.render_prompt([ChatMessage("user", "x")], effort="max")


def completion_tokens(messages, tools=()):
    """The part of a finished conversation the model would have produced."""
    tokens, start = harmony.render_training(messages, tools=tools)
    assert tokens[:start] == harmony.render_prompt(messages[:-1], tools=tools)
    assert tokens[-1] == harmony.special_token_id("<|return|>")
    return tokens[start:]


def test_parse_analysis_and_final():
    toks = completion_tokens(
        [ChatMessage("user", "2+2?"), ChatMessage("assistant", "It is 4.", reasoning="2 plus 2 is 4")]
    )
    c = harmony.parse_completion(toks)
    assert (c.analysis, c.final, c.tool_calls) == ("2 plus 2 is 4", "It is 4.", [])


def test_parse_tool_call():
    prompt = harmony.render_prompt([ChatMessage("user", "Weather in Oslo?")], tools=[WEATHER])
    completion = harmony.encoding().encode(
        "<|channel|>analysis<|message|>Use the tool.<|end|><|start|>assistant to=functions.get_weather"
        '<|channel|>commentary <|constrain|>json<|message|>{"city": "Oslo"}<|call|>',
        allowed_special="all",
    )
    assert prompt[-2:] == harmony.encoding().encode("<|start|>assistant", allowed_special="all")
    c = harmony.parse_completion(completion)
    assert c.analysis == "Use the tool."
    assert [(t.name, json.loads(t.arguments)) for t in c.tool_calls] == [("get_weather", {"city": "Oslo"})]


def test_streaming_parser_one_token_at_a_time_matches_batch_parse():
    toks = completion_tokens(
        [ChatMessage("user", "Hola"), ChatMessage("assistant", "¡Hola! ¿Qué tal?", reasoning="Greeting in Spanish.")]
    )
    parser = harmony.StreamParser()
    by_channel: dict[str, str] = {}
    for t in toks:
        if delta := parser.feed(t):
            by_channel[delta.channel] = by_channel.get(delta.channel, "") + delta.text
    assert by_channel == {"analysis": "Greeting in Spanish.", "final": "¡Hola! ¿Qué tal?"}
    assert parser.finish().final == "¡Hola! ¿Qué tal?"


def test_malformed_output_raises_a_typed_error():
    garbage = harmony.text_tokens("no harmony header here")
    with pytest.raises(harmony.MalformedHarmony):
        harmony.parse_completion(garbage + [harmony.special_token_id("<|end|>")])
