"""The Responses API through the official `openai` client: items, streaming events, tools, store and
previous_response_id across a server restart."""

from __future__ import annotations

import openai
import pytest

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
FORCE = {"type": "function", "name": "get_weather"}


def test_response_items_and_usage(client):
    r = client.responses.create(model="tiny", input="Say hi", max_output_tokens=6, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert [item.type for item in r.output] == ["message"]
    assert r.output_text  # the random model's text (not valid harmony) comes back as a message
    assert r.usage.output_tokens == 6 and r.usage.output_tokens_details.reasoning_tokens == 0


def test_streaming_events_in_order(client):
    events = list(
        client.responses.create(model="tiny", input="Say hi", max_output_tokens=5, temperature=0, stream=True)
    )
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_item.done",
    ):
        assert kind in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text


def test_function_call_round_trip(client):
    first = client.responses.create(
        model="tiny", input="Weather in Paris?", tools=[WEATHER], tool_choice=FORCE, max_output_tokens=6, temperature=0
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id
    # the tool's result goes back by previous_response_id + function_call_output
    second = client.responses.create(
        model="tiny",
        previous_response_id=first.id,
        tools=[WEATHER],
        max_output_tokens=4,
        temperature=0,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temp_c": 21}'}],
    )
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens
    # the same conversation sent whole (no stored state) renders the same prompt
    whole = client.responses.create(
        model="tiny",
        tools=[WEATHER],
        max_output_tokens=4,
        temperature=0,
        store=False,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "get_weather",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temp_c": 21}'},
        ],
    )
    assert whole.usage.input_tokens == second.usage.input_tokens
    assert whole.output_text == second.output_text


def test_streamed_function_call_events(client):
    events = list(
        client.responses.create(
            model="tiny",
            input="Weather in Paris?",
            tools=[WEATHER],
            tool_choice=FORCE,
            max_output_tokens=5,
            temperature=0,
            stream=True,
        )
    )
    added = [e for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"]
    assert added and added[0].item.name == "get_weather"
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].arguments == deltas


def test_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="tiny", input="x", previous_response_id="resp_missing", max_output_tokens=2)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="tiny", input="x", reasoning={"effort": "max"}, max_output_tokens=2)
    assert e.value.body["param"] == "reasoning.effort"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(
            model="tiny", input=[{"type": "function_call_output", "call_id": "nope", "output": "1"}]
        )
    assert "call_id" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="tiny", input="x", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools[0]"


def test_store_and_previous_response_survive_restart(client, tiny_server):
    first = client.responses.create(
        model="tiny", input="Remember: 42", instructions="Be brief.", max_output_tokens=3, temperature=0
    )
    unstored = client.responses.create(model="tiny", input="x", max_output_tokens=2, store=False)
    tiny_server.stop()
    tiny_server.start()
    fetched = client.responses.retrieve(first.id)
    assert fetched.id == first.id and fetched.output_text == first.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    follow = client.responses.create(
        model="tiny", input="What number?", previous_response_id=first.id, max_output_tokens=3, temperature=0
    )
    assert follow.previous_response_id == first.id
    # history = first input + first output + new input (instructions are not carried over, as in OpenAI's API)
    plain = client.responses.create(model="tiny", input="What number?", max_output_tokens=1, temperature=0)
    assert follow.usage.input_tokens >= plain.usage.input_tokens + first.usage.output_tokens + 3
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
