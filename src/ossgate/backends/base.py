"""The backend protocol: what the server hands an engine, and what comes back.

A backend takes a protocol-neutral `ChatTurn` (messages, tools, effort, sampling) rather than token ids,
because an upstream OpenAI-compatible server speaks messages: rendering harmony is the native backend's
job. Both `chat` and `complete` are coroutines that validate and submit *before* returning the event
stream, so a bad request fails with a 4xx before any byte of a streamed response is sent. Closing the
returned stream (aclose, or cancelling the task that iterates it) cancels the generation at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ossgate.harmony import ChatMessage, Effort, ResponseFormat, Tool

ToolChoice = Literal["auto", "none", "required"]


@dataclass
class Sampling:
    """Sampling as the OpenAI APIs express it; each backend maps it to its own engine."""

    max_tokens: int | None = None  # None: the model's default (rest of the context)
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  # stop strings, applied to the answer text
    logprobs: int | None = None  # None: off; N: the sampled token's logprob and N alternatives


@dataclass
class ChatTurn:
    """One assistant turn to generate."""

    messages: list[ChatMessage]
    sampling: Sampling
    effort: Effort = "medium"
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    forced_tool: str | None = None  # tool_choice naming one function: the call is forced
    response_format: ResponseFormat | None = None  # the final answer is JSON matching its schema
    request_id: str = ""


@dataclass
class TokenLogprob:
    """One token's log-probability, with the most likely alternatives, in OpenAI's shape."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[tuple[str, float, list[int]]] = field(default_factory=list)  # (token, logprob, bytes)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0  # part of completion_tokens: the analysis channel
    cached_tokens: int = 0  # part of prompt_tokens: reused from the prefix cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class OutputEvent:
    """A piece of an assistant turn.

    kind: reasoning | content — `text` appended to the reasoning or the answer;
          tool_call — `text` appended to the arguments of call `tool_index` (the first event of a call
                      carries its `tool_name` and `tool_id`);
          finish — the last event: `finish_reason` and `usage`.
    finish_reason: stop | length | tool_calls | abort | error | malformed_harmony (the model broke the
    harmony grammar; whatever it wrote from there on came back as content).
    """

    kind: Literal["reasoning", "content", "tool_call", "finish"]
    text: str = ""
    tool_index: int | None = None
    tool_name: str | None = None
    tool_id: str | None = None
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass
class CompletionTurn:
    """A raw-prompt completion (/v1/completions): no harmony, the prompt is used as given."""

    prompt: str | list[int]
    sampling: Sampling
    echo: bool = False  # return the prompt before the completion (with its logprobs if asked)
    request_id: str = ""


@dataclass
class CompletionEvent:
    """Text appended to a raw completion; the last one has `finish_reason` and `usage`."""

    text: str = ""
    logprobs: list[TokenLogprob | None] | None = None  # None entries: a token with no logprob (the first prompt token)
    finish_reason: str | None = None
    usage: Usage | None = None


class Backend(Protocol):
    """An engine the server can route a model name to."""

    name: str  # the model name clients use
    kind: str  # "native" | "openai"
    context: int | None  # context length, when known
    max_running: int  # requests it runs at once; the server queues at most queue_size more

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def chat(self, turn: ChatTurn) -> AsyncIterator[OutputEvent]:
        """Validate and submit; return the event stream. Raises OssgateError before streaming."""
        ...

    async def complete(self, turn: CompletionTurn) -> AsyncIterator[CompletionEvent]: ...

    def stats(self) -> dict[str, float]:
        """Live load figures for /health and /metrics (running, waiting, kv_usage, …)."""
        ...

    def abort(self, request_id: str) -> None:
        """End one generation now (its client left); its stream then finishes with reason `abort`."""
        ...

    def abort_all(self) -> None:
        """End every running generation (graceful shutdown after the grace period)."""
        ...
