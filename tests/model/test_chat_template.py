"""The checkpoint's chat_template.jinja, through transformers' apply_chat_template, renders exactly what
openai-harmony renders for the same conversation (the format gpt-oss and gpt-oss-nano were trained on)."""

import json
import shutil

import pytest

from ossgate import harmony as h
from ossgate.model.tokenizer_files import CHAT_TEMPLATE, write_tokenizer_files

WEATHER = h.Tool(
    "get_weather",
    "Current weather in a city",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            "days": {"type": "integer", "default": 1},
        },
        "required": ["city"],
    },
)
SCHEMAS = h.Tool(  # every schema shape the template renders: arrays, unions, nesting, defaults
    "catalog",
    "",
    {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
            "ids": {"type": "array", "items": {"type": "integer"}},
            "any_list": {"type": "array"},
            "flag": {"type": "boolean", "default": False},
            "ratio": {"type": "number", "default": 0.5},
            "maybe": {"type": ["string", "null"]},
            "nullable": {"type": "string", "nullable": True},
            "either": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "any_of": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "choice": {"type": "string", "enum": ["a", "b"], "nullable": True},
            "address": {
                "type": "object",
                "description": "Where",
                "properties": {"street": {"type": "string"}, "zip": {"type": "integer", "description": "ZIP"}},
                "required": ["street"],
            },
            "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
            "anything": {},
        },
    },
)
PING = h.Tool("ping")

CALL = h.ToolCall("get_weather", '{"city": "Paris"}')
CASES = {
    "one user turn": ([h.ChatMessage("user", "What is 17 + 25?")], [], "medium"),
    "instructions, effort high": (
        [h.ChatMessage("system", "Be brief."), h.ChatMessage("developer", "Answer in Spanish."),
         h.ChatMessage("user", "hola")], [], "high"),
    "tool call in flight (reasoning kept)": (
        [h.ChatMessage("user", "Weather in Paris?"),
         h.ChatMessage("assistant", "", reasoning="Need the tool.", tool_calls=[CALL]),
         h.ChatMessage("tool", '{"temp": 20}', name="get_weather")], [WEATHER, PING], "low"),
    "finished turns (reasoning dropped)": (
        [h.ChatMessage("system", "Be brief."), h.ChatMessage("user", "Weather in Paris?"),
         h.ChatMessage("assistant", "", reasoning="Need the tool.", tool_calls=[CALL]),
         h.ChatMessage("tool", '{"temp": 20}', name="get_weather"),
         h.ChatMessage("assistant", "It is 20 °C.", reasoning="Read it."), h.ChatMessage("user", "Thanks!")],
        [WEATHER], "medium"),
    "schemas": ([h.ChatMessage("user", "list")], [SCHEMAS, PING], "medium"),
}  # fmt: skip


def openai_messages(messages: list[h.ChatMessage]) -> list[dict]:
    """Our dataclasses as the Chat Completions messages a client would send."""
    out = []
    for m in messages:
        d: dict = {"role": m.role, "content": m.content}
        if m.reasoning:
            d["reasoning_content"] = m.reasoning
        if m.tool_calls:
            d["tool_calls"] = [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                               for c in m.tool_calls]  # fmt: skip
        if m.role == "tool":
            d["tool_call_id"] = "call_1"  # the name comes from the call it answers
        out.append(d)
    return out


def openai_tools(tools: list[h.Tool]) -> list[dict]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              **({"parameters": t.parameters} if t.parameters else {})}}
            for t in tools]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    write_tokenizer_files(out)
    return AutoTokenizer.from_pretrained(out)


@pytest.mark.parametrize("case", list(CASES))
def test_template_renders_as_harmony(tokenizer, case):
    messages, tools, effort = CASES[case]
    kwargs = {"tools": openai_tools(tools) or None, "reasoning_effort": effort, "add_generation_prompt": True}
    got = tokenizer.apply_chat_template(openai_messages(messages), tokenize=False, **kwargs)
    assert got == h.decode(h.render_prompt(messages, effort=effort, tools=tools))
    ids = tokenizer.apply_chat_template(openai_messages(messages), tokenize=True, **kwargs)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert list(ids) == h.render_prompt(messages, effort=effort, tools=tools)  # the same tokens, specials included


def test_training_render_matches(tokenizer):
    messages = [h.ChatMessage("user", "What is 2 + 2?"), h.ChatMessage("assistant", "4", reasoning="2 + 2 = 4.")]
    tokens, _ = h.render_training(messages, effort="low")
    got = tokenizer.apply_chat_template(openai_messages(messages), reasoning_effort="low", tokenize=False)
    assert got == h.decode(tokens)


def test_tool_message_without_a_call_is_an_error(tokenizer):
    with pytest.raises(Exception, match="needs the name of the function"):
        tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "tool", "content": "{}"}],
                                      tokenize=False)  # fmt: skip


def test_written_checkpoints_carry_the_template(tmp_path):
    write_tokenizer_files(tmp_path)
    assert (tmp_path / "chat_template.jinja").read_text() == CHAT_TEMPLATE.read_text()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|return|>"
    shutil.rmtree(tmp_path)
