"""The `openai` backend against a real upstream: a second ossgate process serving the tiny model.

The front server runs no model itself; what it returns must match what the upstream says directly.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from server_procs import ServerProcess, tiny_model

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory, ossgate_home, tiny_checkpoint):
    upstream = ServerProcess(tmp_path_factory.mktemp("upstream"), [tiny_model(tiny_checkpoint)], ossgate_home).start()
    front = ServerProcess(
        tmp_path_factory.mktemp("front"),
        [
            {
                "name": "fronted",
                "backend": "openai",
                "upstream": upstream.url,
                "upstream_model": "tiny",
                "max_running": 2,
            },
        ],
        ossgate_home,
    ).start()
    yield upstream, front
    front.stop()
    upstream.stop()


def clients(servers):
    upstream, front = servers
    make = lambda s: openai.OpenAI(base_url=s.url, api_key="x", max_retries=0, timeout=120)  # noqa: E731
    return make(upstream), make(front)


def test_chat_through_upstream_matches_direct(servers):
    direct, fronted = clients(servers)
    a = direct.chat.completions.create(model="tiny", messages=USER, max_tokens=6, temperature=0)
    b = fronted.chat.completions.create(model="fronted", messages=USER, max_tokens=6, temperature=0)
    assert b.model == "fronted"
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.choices[0].finish_reason == a.choices[0].finish_reason
    assert (b.usage.prompt_tokens, b.usage.completion_tokens) == (a.usage.prompt_tokens, a.usage.completion_tokens)
    chunks = list(
        fronted.chat.completions.create(
            model="fronted",
            messages=USER,
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == a.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 6


def test_tool_calls_and_tool_results_pass_through(servers):
    direct, fronted = clients(servers)
    force = {"type": "function", "function": {"name": "get_weather"}}
    a = direct.chat.completions.create(
        model="tiny", messages=USER, tools=[TOOL], tool_choice=force, max_tokens=5, temperature=0
    )
    b = fronted.chat.completions.create(
        model="fronted", messages=USER, tools=[TOOL], tool_choice=force, max_tokens=5, temperature=0
    )
    ca, cb = a.choices[0].message.tool_calls[0], b.choices[0].message.tool_calls[0]
    assert (cb.function.name, cb.function.arguments) == (ca.function.name, ca.function.arguments)
    follow = USER + [
        {"role": "assistant", "tool_calls": [cb.model_dump()]},
        {"role": "tool", "tool_call_id": cb.id, "content": "21 C"},
    ]
    r = fronted.chat.completions.create(model="fronted", messages=follow, tools=[TOOL], max_tokens=2, temperature=0)
    assert r.usage.prompt_tokens > b.usage.prompt_tokens


def test_responses_api_over_a_chat_only_upstream(servers):
    _, fronted = clients(servers)
    r = fronted.responses.create(model="fronted", input="Say hi", max_output_tokens=4, temperature=0)
    assert r.output_text and r.usage.output_tokens == 4
    follow = fronted.responses.create(model="fronted", input="again", previous_response_id=r.id, max_output_tokens=2)
    assert follow.usage.input_tokens > r.usage.input_tokens


def test_upstream_errors_and_cancellation(servers):
    upstream, front = servers
    _, fronted = clients(servers)
    with pytest.raises(openai.BadRequestError) as e:
        fronted.chat.completions.create(model="fronted", messages=USER, max_tokens=10**6)
    assert "max_tokens" in e.value.body["message"]
    # a client leaving the front server ends the upstream generation too
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            front.url + "/chat/completions",
            timeout=httpx.Timeout(60, read=2),
            json={"model": "fronted", "messages": USER, "max_tokens": 50_000, "temperature": 0},
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and upstream.health()["models"]["tiny"]["running"]:
        time.sleep(0.1)
    assert upstream.health()["models"]["tiny"]["running"] == 0
    assert upstream.health()["models"]["tiny"]["tokens_generated"] < 50_000


def test_unreachable_upstream_is_a_502(tmp_path, ossgate_home):
    dead = ServerProcess(
        tmp_path, [{"name": "gone", "backend": "openai", "upstream": "http://127.0.0.1:9/v1"}], ossgate_home
    ).start()
    try:
        r = httpx.post(dead.url + "/chat/completions", json={"model": "gone", "messages": USER}, timeout=60)
        assert r.status_code == 502 and "unreachable" in r.json()["error"]["message"]
    finally:
        dead.stop()


def test_response_format_reaches_the_upstream(servers):
    direct, fronted = clients(servers)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "check", "schema": schema}}

    def said(client, model: str, **kw) -> tuple:
        m = client.chat.completions.create(model=model, messages=USER, max_tokens=8, temperature=0, **kw)
        return m.choices[0].message.content, getattr(m.choices[0].message, "reasoning", None)

    bound = said(direct, "tiny", response_format=fmt)
    assert said(fronted, "fronted", response_format=fmt) == bound
    assert said(direct, "tiny") != bound  # the format changed what the random model wrote
