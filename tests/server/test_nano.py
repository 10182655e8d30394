"""Real model behaviour through the server, on the trained gpt-oss-nano (the default model when no
model is configured): reasoning effort changes reasoning length, and a full tool round trip
(call -> tool result -> answer) works in both APIs."""

from __future__ import annotations

import json

import openai
import pytest
from server_procs import ServerProcess

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
}
QUESTIONS = ["What is 47 + 38?", "What is 125 - 67?"]  # few and short: the nano model decodes ~5-20 tok/s on CPU


@pytest.fixture(scope="module")
def nano_client(tmp_path_factory, ossgate_home, nano_path):
    server = ServerProcess(tmp_path_factory.mktemp("nano"), [], ossgate_home).start()  # no [[models]]: nano
    yield openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=300)
    server.stop()


def test_nano_is_the_default_model(nano_client):
    assert [m.id for m in nano_client.models.list()] == ["gpt-oss-nano"]


def test_reasoning_effort_changes_reasoning_length(nano_client):
    def reasoning_tokens(effort: str) -> int:
        total = 0
        for q in QUESTIONS:
            r = nano_client.chat.completions.create(
                model="gpt-oss-nano",
                messages=[{"role": "user", "content": q}],
                reasoning_effort=effort,
                temperature=0,
                max_tokens=400,
            )
            assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content
            total += r.usage.completion_tokens_details.reasoning_tokens
        return total

    low, high = reasoning_tokens("low"), reasoning_tokens("high")
    assert high > low > 0


def test_reasoning_is_streamed_and_suppressible(nano_client):
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    whole = nano_client.chat.completions.create(model="gpt-oss-nano", messages=messages, temperature=0, max_tokens=400)
    reasoning = whole.choices[0].message.reasoning
    assert reasoning and whole.choices[0].message.reasoning_content == reasoning
    chunks = list(
        nano_client.chat.completions.create(
            model="gpt-oss-nano", messages=messages, temperature=0, max_tokens=400, stream=True
        )
    )
    streamed = "".join(getattr(c.choices[0].delta, "reasoning", None) or "" for c in chunks if c.choices)
    assert streamed == reasoning
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    hidden = nano_client.chat.completions.create(
        model="gpt-oss-nano", messages=messages, temperature=0, max_tokens=400, extra_body={"include_reasoning": False}
    )
    assert getattr(hidden.choices[0].message, "reasoning", None) is None
    assert hidden.usage.completion_tokens_details.reasoning_tokens > 0


def test_tool_round_trip_chat_completions(nano_client):
    tools = [{"type": "function", "function": WEATHER}]
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    first = nano_client.chat.completions.create(
        model="gpt-oss-nano", messages=messages, tools=tools, temperature=0, max_tokens=400
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] == "Paris"  # copied from the request
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21, "sky": "sunny"})},
    ]
    second = nano_client.chat.completions.create(
        model="gpt-oss-nano", messages=messages, tools=tools, temperature=0, max_tokens=400
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls


def test_tool_round_trip_responses(nano_client):
    tools = [{"type": "function", **WEATHER}]
    first = nano_client.responses.create(
        model="gpt-oss-nano", input="What's the weather in Paris?", tools=tools, temperature=0, max_output_tokens=200
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and json.loads(calls[0].arguments)["city"] == "Paris"
    second = nano_client.responses.create(
        model="gpt-oss-nano",
        previous_response_id=first.id,
        tools=tools,
        temperature=0,
        max_output_tokens=400,
        input=[
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temp_c": 21, "sky": "sunny"}'}
        ],
    )
    assert second.status == "completed" and second.output_text
    assert not [item for item in second.output if item.type == "function_call"]


# held-out evaluation cases (seed 20250805) where the model alone names a tool nobody declared: it writes
# "local_guess_world" and "fx_converter"; the server's tool-call grammar only lets it write declared names
TICKER = {
    "type": "object",
    "properties": {"symbol": {"type": "string", "description": "Ticker symbol"}},
    "required": ["symbol"],
}
WORD = {"type": "object", "properties": {"term": {"type": "string", "description": "The word"}}, "required": ["term"]}
FOOD = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "food": {"type": "string"}},
    "required": ["city", "food"],
}


def function(name: str, description: str, parameters: dict) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def test_tool_choice_required_calls_the_declared_tool_by_its_exact_name(nano_client):
    tools = [function("local_world_guess", "Get the latest price of a stock by ticker symbol.", TICKER)]
    r = nano_client.chat.completions.create(
        model="gpt-oss-nano",
        messages=[{"role": "user", "content": "How much is ORCL trading at?"}],
        tools=tools,
        tool_choice="required",
        temperature=0,
        max_tokens=400,
    )
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "local_world_guess"
    assert list(json.loads(call.function.arguments)) == ["symbol"]


def test_calls_name_only_declared_tools_with_arguments_of_their_schema(nano_client):
    tools = [
        function("fx_ticker_converter", "Gives the meaning of a word.", WORD),
        function("stock_currency_email", "Find restaurants matching a type of food.", FOOD),
    ]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    for stream in (False, True):
        r = nano_client.chat.completions.create(
            model="gpt-oss-nano",
            messages=[{"role": "user", "content": 'Define la palabra "serendipity".'}],
            tools=tools,
            temperature=0,
            max_tokens=400,
            stream=stream,
        )
        if stream:
            deltas = [tc for c in r if c.choices for tc in c.choices[0].delta.tool_calls or []]
            name, arguments = deltas[0].function.name, "".join(d.function.arguments or "" for d in deltas)
        else:
            call = r.choices[0].message.tool_calls[0]
            name, arguments = call.function.name, call.function.arguments
        assert name in schemas
        args = json.loads(arguments)
        assert set(schemas[name]["required"]) <= set(args) <= set(schemas[name]["properties"])
        assert all(isinstance(v, str) for v in args.values())


ANSWER = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def test_response_format_json_schema_makes_the_answer_json_of_the_schema(nano_client):
    r = nano_client.chat.completions.create(
        model="gpt-oss-nano",
        messages=[{"role": "user", "content": "What is 17 + 25?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "sum", "schema": ANSWER, "strict": True}},
        temperature=0,
        max_tokens=400,
    )
    assert r.choices[0].finish_reason == "stop"
    assert set(json.loads(r.choices[0].message.content)) == {"answer"}
    assert isinstance(json.loads(r.choices[0].message.content)["answer"], int)
    assert r.choices[0].message.reasoning  # the reasoning stays free text


def test_responses_text_format_json_schema(nano_client):
    fmt = {"type": "json_schema", "name": "sum", "schema": ANSWER, "strict": True}
    r = nano_client.responses.create(
        model="gpt-oss-nano", input="What is 17 + 25?", text={"format": fmt}, temperature=0, max_output_tokens=400
    )
    assert r.status == "completed"
    assert isinstance(json.loads(r.output_text)["answer"], int)
    assert r.text.format.type == "json_schema"
