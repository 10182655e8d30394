"""Chat Completions, Completions, models, tokenize and the error JSON, through the official `openai` client
against a real server running the tiny random-weight checkpoint."""

from __future__ import annotations

import httpx
import openai
import pytest

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_chat_completion_returns_text_and_usage(client):
    r = client.chat.completions.create(model="tiny", messages=USER, max_tokens=8, temperature=0)
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.model == "tiny"
    # random weights produce no valid harmony: the text comes back as content, never a 500
    assert choice.message.content
    assert choice.finish_reason in ("length", "malformed_harmony")
    assert r.usage.completion_tokens == 8
    assert r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8
    assert r.usage.completion_tokens_details.reasoning_tokens == 0


def test_greedy_is_deterministic_and_seed_reproducible(client):
    a = client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, temperature=0)
    b = client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content
    c = client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, temperature=1, seed=7)
    d = client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, temperature=1, seed=7)
    assert c.choices[0].message.content == d.choices[0].message.content


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="tiny", messages=USER, max_tokens=6, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    whole = client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, temperature=0)
    assert text == whole.choices[0].message.content
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6


def test_n_choices_and_logprobs(client):
    r = client.chat.completions.create(
        model="tiny", messages=USER, max_tokens=4, temperature=1, seed=1, n=2, logprobs=True, top_logprobs=3
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.completion_tokens == 8
    entries = [e for c in r.choices for e in (c.logprobs.content or [])]
    assert entries, "content tokens carry logprobs"
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].logprob >= e.top_logprobs[-1].logprob


def test_named_tool_choice_returns_tool_call(client):
    # a named function forces the harmony header `to=functions.get_weather`: whatever the random model then
    # writes are the call's arguments, returned as tool_calls, not content
    r = client.chat.completions.create(
        model="tiny",
        messages=USER,
        tools=[WEATHER_TOOL],
        max_tokens=6,
        temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert call.function.arguments
    stream = client.chat.completions.create(
        model="tiny",
        messages=USER,
        tools=[WEATHER_TOOL],
        max_tokens=6,
        temperature=0,
        stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    deltas = [tc for c in stream if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather" and deltas[0].id
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments


def test_tool_result_message_is_accepted(client):
    messages = USER + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]
    r = client.chat.completions.create(
        model="tiny", messages=messages, tools=[WEATHER_TOOL], max_tokens=4, temperature=0
    )
    assert (
        r.usage.prompt_tokens
        > client.chat.completions.create(
            model="tiny", messages=USER, tools=[WEATHER_TOOL], max_tokens=1, temperature=0
        ).usage.prompt_tokens
    )


def test_completions_echo_prompt_logprobs_for_lm_eval(client, tiny_server):
    # the payload lm-evaluation-harness's local-completions sends for log-likelihood
    prompt = "The capital of France is Paris"
    tokens = httpx.post(tiny_server.base + "/tokenize", json={"prompt": prompt}).json()["tokens"]
    r = client.completions.create(model="tiny", prompt=tokens, max_tokens=1, temperature=0, logprobs=1, echo=True)
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith(prompt)
    assert len(lp.token_logprobs) == len(tokens) + 1 and lp.token_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])
    assert "".join(lp.tokens[: len(tokens)]) == prompt
    # scoring only: max_tokens 0 with echo returns the prompt's logprobs and generates nothing
    s = client.completions.create(model="tiny", prompt=prompt, max_tokens=0, temperature=0, logprobs=2, echo=True)
    assert s.choices[0].logprobs.token_logprobs[1:] == pytest.approx(lp.token_logprobs[1 : len(tokens)], abs=1e-3)
    assert s.usage.completion_tokens == 0


def test_completions_streaming_and_batch(client):
    r = client.completions.create(model="tiny", prompt=["Hello", "Goodbye"], max_tokens=3, temperature=0)
    assert sorted(c.index for c in r.choices) == [0, 1]
    stream = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == r.choices[0].text


def test_models_tokenize_detokenize_health_metrics(client, tiny_server):
    assert [m.id for m in client.models.list()] == ["tiny"]
    tok = httpx.post(tiny_server.base + "/tokenize", json={"prompt": "Hello world"}).json()
    assert tok["count"] == len(tok["tokens"]) == 2
    assert httpx.post(tiny_server.base + "/detokenize", json={"tokens": tok["tokens"]}).json() == {
        "prompt": "Hello world"
    }
    chat = httpx.post(tiny_server.base + "/tokenize", json={"messages": USER}).json()
    assert chat["count"] > tok["count"]
    health = tiny_server.health()
    assert health["status"] == "ok" and health["models"]["tiny"]["backend"] == "native"
    metrics = httpx.get(tiny_server.base + "/metrics").text
    assert 'ossgate:requests_total{model_name="tiny",status="ok"}' in metrics
    assert "ossgate:admission_rejected_total" in metrics


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"model": "nope"}, 404, "model", "does not exist"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role", "unknown"),
        ({"temperature": 3}, 400, "temperature", "less than or equal to 2"),
        ({"top_p": 0}, 400, "top_p", "greater than 0"),
        ({"max_tokens": 0}, 400, "max_tokens", "greater than or equal to 1"),
        ({"n": 99}, 400, "n", "less than or equal to 8"),
        ({"top_logprobs": 50, "logprobs": True}, 400, "top_logprobs", "less than or equal to 20"),
        ({"max_tokens": 10**6}, 400, "max_tokens", "Set max_tokens to at most"),
        ({"reasoning_effort": "extreme"}, 400, "reasoning_effort", "low, medium, high"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "object", "properties": {"a": {"type": "strong"}}},
                        },
                    }
                ]
            },
            400,
            "tools[0].function.parameters.properties.a",
            "schema type",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            400,
            "tools[0].function.name",
            "letters",
        ),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            400,
            "tool_choice",
            "not in tools",
        ),
        (
            {"messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]},
            400,
            "messages[0].tool_call_id",
            "does not match",
        ),
        ({"messages": []}, 400, "messages", "at least 1"),
        ({"response_format": {"type": "xml"}}, 400, "response_format", "'json_schema'"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}},
            400,
            "response_format.json_schema.name",
            "must be 1-64 letters",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a\n# Tools", "schema": {}}}},
            400,
            "response_format.json_schema.name",
            "must be 1-64 letters",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            400,
            "response_format.json_schema.schema",
            "is required",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"minItems": "2"}}}},
            400,
            "response_format.json_schema.schema",
            "cannot be enforced",
        ),
    ],
)
def test_errors_are_openai_json(tiny_server, body, status, param, words):
    payload = {"model": "tiny", "messages": USER, "max_tokens": 2} | body
    r = httpx.post(tiny_server.url + "/chat/completions", json=payload, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and words in err["message"], err


def test_error_through_openai_client(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=USER)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=USER, max_tokens=10**6)
    assert e.value.body["code"] == "context_length_exceeded"


def test_malformed_json_and_unknown_route(tiny_server):
    r = httpx.post(
        tiny_server.url + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.get(tiny_server.url + "/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
