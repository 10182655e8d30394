"""The `openai` backend: any OpenAI-compatible upstream (vLLM, llama.cpp server, Ollama, another ossgate).

ossgate fronts it with its own keys, limits, pipeline and APIs (Responses included, even when the
upstream only has Chat Completions): turns go upstream as streamed /chat/completions calls and the
chunks come back as the same OutputEvents the native backend yields. Reasoning is read from
`reasoning` or `reasoning_content`, whichever the upstream uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ossgate.backends.base import ChatTurn, CompletionEvent, CompletionTurn, OutputEvent, TokenLogprob, Usage
from ossgate.errors import InvalidRequest, OssgateError, UpstreamError
from ossgate.harmony import ChatMessage
from ossgate.settings import ModelSettings

log = logging.getLogger(__name__)


def message_json(m: ChatMessage) -> dict[str, Any]:
    """A harmony-side ChatMessage back to Chat Completions JSON."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.role == "assistant":
        if m.reasoning:
            out["reasoning_content"] = out["reasoning"] = m.reasoning
        if m.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ]
    if m.role == "tool":
        out["name"] = m.name
    return out


def messages_json(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Chat Completions messages; a tool result gets back the id of the call it answers (matched by name)."""
    out, open_calls = [], []
    for m in messages:
        j = message_json(m)
        if m.role == "assistant":
            open_calls += m.tool_calls
        elif m.role == "tool":
            call = next((c for c in open_calls if c.name == m.name), None)
            if call is not None:
                open_calls.remove(call)
            j["tool_call_id"] = call.id if call is not None and call.id else f"call_{m.name}"
        out.append(j)
    return out


def chat_payload(turn: ChatTurn, model: str) -> dict[str, Any]:
    s = turn.sampling
    body: dict[str, Any] = {
        "model": model,
        "messages": messages_json(turn.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": s.temperature,
        "top_p": s.top_p,
        "reasoning_effort": turn.effort,
    }
    if s.max_tokens is not None:
        body["max_tokens"] = s.max_tokens
    if s.seed is not None:
        body["seed"] = s.seed
    if s.stop:
        body["stop"] = s.stop
    if s.logprobs is not None:
        body |= {"logprobs": True, "top_logprobs": s.logprobs}
    if turn.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters or {}},
            }
            for t in turn.tools
        ]
        body["tool_choice"] = (
            {"type": "function", "function": {"name": turn.forced_tool}} if turn.forced_tool else turn.tool_choice
        )
    if (fmt := turn.response_format) is not None:
        spec = {"name": fmt.name, "schema": fmt.schema} | ({"description": fmt.description} if fmt.description else {})
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    return body


def _logprobs(raw: dict | None) -> list[TokenLogprob] | None:
    if not raw or not raw.get("content"):
        return None
    return [
        TokenLogprob(
            token=e["token"],
            logprob=e["logprob"],
            bytes=e.get("bytes") or list(e["token"].encode()),
            top=[
                (t["token"], t["logprob"], t.get("bytes") or list(t["token"].encode()))
                for t in e.get("top_logprobs") or []
            ],
        )
        for e in raw["content"]
    ]


class OpenAIUpstreamBackend:
    kind = "openai"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.upstream_model = settings.upstream_model or settings.name
        self.max_running = settings.max_running
        self.context = settings.context
        self._client: httpx.AsyncClient | None = None
        self._running = 0
        self._open_streams: dict[str, httpx.Response] = {}

    async def start(self) -> None:
        headers = (
            {"Authorization": f"Bearer {self.settings.upstream_api_key}"} if self.settings.upstream_api_key else {}
        )
        self._client = httpx.AsyncClient(
            base_url=self.settings.upstream.rstrip("/"), headers=headers, timeout=self.settings.upstream_timeout_s
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def abort(self, request_id: str) -> None:
        # closing the HTTP stream is how an OpenAI-compatible server learns to stop generating
        if (response := self._open_streams.get(request_id)) is not None:
            asyncio.get_running_loop().create_task(response.aclose())

    def abort_all(self) -> None:
        for request_id in list(self._open_streams):
            self.abort(request_id)

    def stats(self) -> dict[str, float]:
        return {"running": self._running}

    async def _open(self, path: str, body: dict[str, Any]) -> httpx.Response:
        assert self._client is not None, "backend not started"
        request = self._client.build_request("POST", path, json=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as e:
            raise UpstreamError(f"upstream {self.settings.upstream} for model {self.name!r} is unreachable: {e}") from e
        if response.status_code >= 400:
            detail = (await response.aread()).decode(errors="replace")
            await response.aclose()
            try:
                message = json.loads(detail)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = detail[:500]
            err: OssgateError = InvalidRequest(message) if response.status_code < 500 else UpstreamError(message)
            err.status = response.status_code if response.status_code < 500 else 502
            raise err
        return response

    async def _sse(self, response: httpx.Response, request_id: str) -> AsyncIterator[dict]:
        self._running += 1
        self._open_streams[request_id] = response
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield json.loads(data)
        except httpx.StreamError:
            return  # we closed it: abort (client gone, shutdown)
        except httpx.HTTPError as e:
            raise UpstreamError(f"upstream stream for model {self.name!r} broke: {e}") from e
        finally:
            self._running -= 1
            self._open_streams.pop(request_id, None)
            await response.aclose()  # closing mid-stream cancels the upstream generation

    async def chat(self, turn: ChatTurn) -> AsyncIterator[OutputEvent]:
        response = await self._open("/chat/completions", chat_payload(turn, self.upstream_model))
        return self._chat_events(response, turn.request_id)

    async def _chat_events(self, response: httpx.Response, request_id: str) -> AsyncIterator[OutputEvent]:
        usage, reason = Usage(), "abort"  # until the upstream says otherwise
        tool_slots: dict[int, int] = {}  # upstream index -> ours
        chunks = self._sse(response, request_id)
        try:
            async for chunk in chunks:
                if u := chunk.get("usage"):
                    details = u.get("completion_tokens_details") or {}
                    usage = Usage(
                        prompt_tokens=u.get("prompt_tokens", 0),
                        completion_tokens=u.get("completion_tokens", 0),
                        reasoning_tokens=details.get("reasoning_tokens") or 0,
                        cached_tokens=(u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
                    )
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if text := delta.get("reasoning") or delta.get("reasoning_content"):
                        yield OutputEvent("reasoning", text)
                    if delta.get("content") or choice.get("logprobs"):
                        yield OutputEvent(
                            "content", delta.get("content") or "", logprobs=_logprobs(choice.get("logprobs"))
                        )
                    for call in delta.get("tool_calls") or []:
                        fn = call.get("function") or {}
                        index = call.get("index", 0)
                        if index not in tool_slots:
                            tool_slots[index] = len(tool_slots)
                            yield OutputEvent(
                                "tool_call",
                                fn.get("arguments") or "",
                                tool_index=tool_slots[index],
                                tool_name=fn.get("name"),
                                tool_id=call.get("id"),
                            )
                        elif fn.get("arguments"):
                            yield OutputEvent("tool_call", fn["arguments"], tool_index=tool_slots[index])
                    if choice.get("finish_reason"):
                        reason = choice["finish_reason"]
        finally:
            await chunks.aclose()
        yield OutputEvent("finish", finish_reason=reason, usage=usage)

    async def complete(self, turn: CompletionTurn) -> AsyncIterator[CompletionEvent]:
        if turn.echo or turn.sampling.logprobs is not None:
            raise InvalidRequest(
                f"model {self.name!r} is served by an upstream: echo and logprobs on /v1/completions "
                "need a native model",
                param="echo" if turn.echo else "logprobs",
            )
        s = turn.sampling
        body: dict[str, Any] = {
            "model": self.upstream_model,
            "prompt": turn.prompt,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        body |= {
            k: v for k, v in (("max_tokens", s.max_tokens), ("seed", s.seed), ("stop", s.stop or None)) if v is not None
        }
        response = await self._open("/completions", body)
        return self._completion_events(response, turn.request_id)

    async def _completion_events(self, response: httpx.Response, request_id: str) -> AsyncIterator[CompletionEvent]:
        usage, reason = Usage(), "abort"  # until the upstream says otherwise
        chunks = self._sse(response, request_id)
        try:
            async for chunk in chunks:
                if u := chunk.get("usage"):
                    usage = Usage(
                        prompt_tokens=u.get("prompt_tokens", 0), completion_tokens=u.get("completion_tokens", 0)
                    )
                for choice in chunk.get("choices") or []:
                    if choice.get("text"):
                        yield CompletionEvent(text=choice["text"])
                    reason = choice.get("finish_reason") or reason
        finally:
            await chunks.aclose()
        yield CompletionEvent(finish_reason=reason, usage=usage)
