"""Conversations <-> tokens in the harmony format, through the official `openai-harmony` library.

gpt-oss only speaks harmony: a system message carries the reasoning effort, a developer message carries
instructions, function tools and the response format, and the assistant answers on channels — `analysis` (reasoning),
`commentary` (tool calls, `to=functions.NAME`) and `final`. This module is the one place that knows
how our plain dataclasses map to harmony messages and back; it imports no torch.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import openai_harmony as oh

from ossgate.errors import InvalidRequest
from ossgate.vocab import provision_vocabulary

Effort = Literal["low", "medium", "high"]
Role = Literal["system", "developer", "user", "assistant", "tool"]

_EFFORTS: dict[str, oh.ReasoningEffort] = {
    "low": oh.ReasoningEffort.LOW,
    "medium": oh.ReasoningEffort.MEDIUM,
    "high": oh.ReasoningEffort.HIGH,
}


@functools.cache
def encoding() -> oh.HarmonyEncoding:
    """The gpt-oss harmony encoding, loaded from the offline vocabulary (never from the network)."""
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(provision_vocabulary())
    return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)


def stop_token_ids() -> list[int]:
    """`<|return|>` and `<|call|>`: the tokens that end an assistant turn."""
    return sorted(encoding().stop_tokens_for_assistant_actions())


def special_token_id(text: str) -> int:
    return encoding().encode(text, allowed_special="all")[0]


@dataclass
class Tool:
    """A function tool, as declared in OpenAI's `tools` list."""

    name: str
    description: str = ""
    parameters: dict | None = None


@dataclass
class ResponseFormat:
    """A JSON schema the final answer must follow (`response_format` / `text.format` of type json_schema)."""

    name: str
    schema: dict
    description: str = ""

    def section(self) -> str:
        """The developer message's `# Response Formats` section, as the harmony spec writes it."""
        comment = f"// {self.description}\n" if self.description else ""
        schema = json.dumps(self.schema, ensure_ascii=False, separators=(",", ":"))
        return f"# Response Formats\n\n## {self.name}\n\n{comment}{schema}"


@dataclass
class ToolCall:
    """One call the assistant made on the commentary channel."""

    name: str
    arguments: str  # the JSON text exactly as the model wrote it
    id: str = ""


@dataclass
class ChatMessage:
    """One turn of a conversation, in the vocabulary of OpenAI's Chat Completions API.

    `system` turns become harmony developer instructions (harmony's own system message is ours: it
    carries the reasoning effort). An assistant turn may carry reasoning (analysis), tool calls, or text.
    """

    role: Role
    content: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    name: str | None = None  # for role "tool": the function whose output this is


@dataclass
class Completion:
    """What the model said, split by channel."""

    analysis: str = ""
    final: str = ""
    commentary: str = ""  # preamble text on the commentary channel that is not a tool call
    tool_calls: list[ToolCall] = field(default_factory=list)


def _system_message(effort: Effort) -> oh.Message:
    if effort not in _EFFORTS:
        raise InvalidRequest(
            f"reasoning_effort must be one of low, medium, high; got {effort!r}", param="reasoning_effort"
        )
    return oh.Message.from_role_and_content(
        oh.Role.SYSTEM, oh.SystemContent.new().with_reasoning_effort(_EFFORTS[effort])
    )


def _developer_message(
    instructions: str, tools: Sequence[Tool], response_format: ResponseFormat | None
) -> oh.Message | None:
    if not instructions and not tools and response_format is None:
        return None
    content = oh.DeveloperContent.new()
    if instructions:
        content = content.with_instructions(instructions)
    if tools:
        content = content.with_function_tools(
            [oh.ToolDescription.new(t.name, t.description, parameters=t.parameters) for t in tools]
        )
    if not instructions and not tools:  # openai-harmony has no response formats: the section is the message
        return oh.Message.from_role_and_content(oh.Role.DEVELOPER, response_format.section())
    message = oh.Message.from_role_and_content(oh.Role.DEVELOPER, content)
    if response_format is not None:  # at the end of the developer message, after the tools
        message = message.adding_content(oh.TextContent(text="\n\n" + response_format.section()))
    return message


def _history(messages: Iterable[ChatMessage]) -> Iterable[oh.Message]:
    for m in messages:
        if m.role == "user":
            yield oh.Message.from_role_and_content(oh.Role.USER, m.content)
        elif m.role == "assistant":
            if m.reasoning:
                yield oh.Message.from_role_and_content(oh.Role.ASSISTANT, m.reasoning).with_channel("analysis")
            for call in m.tool_calls:
                yield (
                    oh.Message.from_role_and_content(oh.Role.ASSISTANT, call.arguments)
                    .with_channel("commentary")
                    .with_recipient(f"functions.{call.name}")
                    .with_content_type("<|constrain|>json")
                )
            if m.content:
                yield oh.Message.from_role_and_content(oh.Role.ASSISTANT, m.content).with_channel("final")
        elif m.role == "tool":
            if not m.name:
                raise InvalidRequest("a tool message needs the name of the function it answers", param="messages")
            author = oh.Author.new(oh.Role.TOOL, f"functions.{m.name}")
            yield (
                oh.Message.from_author_and_content(author, m.content)
                .with_channel("commentary")
                .with_recipient("assistant")
            )
        elif m.role not in ("system", "developer"):
            raise InvalidRequest(f"unknown role {m.role!r}", param="messages")


def build_conversation(
    messages: Sequence[ChatMessage],
    *,
    effort: Effort = "medium",
    tools: Sequence[Tool] = (),
    response_format: ResponseFormat | None = None,
) -> oh.Conversation:
    instructions = "\n\n".join(m.content for m in messages if m.role in ("system", "developer") and m.content)
    harmony_messages = [_system_message(effort)]
    if developer := _developer_message(instructions, tools, response_format):
        harmony_messages.append(developer)
    harmony_messages.extend(_history(messages))
    return oh.Conversation.from_messages(harmony_messages)


def render_prompt(
    messages: Sequence[ChatMessage],
    *,
    effort: Effort = "medium",
    tools: Sequence[Tool] = (),
    response_format: ResponseFormat | None = None,
) -> list[int]:
    """Token ids of the conversation, ending with `<|start|>assistant` for the model to continue.

    Earlier turns' reasoning is dropped once they reached a final answer, as gpt-oss was trained.
    """
    conversation = build_conversation(messages, effort=effort, tools=tools, response_format=response_format)
    try:
        return list(encoding().render_conversation_for_completion(conversation, oh.Role.ASSISTANT))
    except oh.HarmonyError as e:
        raise InvalidRequest(f"cannot render conversation: {e}", param="messages") from e


def render_training(
    messages: Sequence[ChatMessage], *, effort: Effort = "medium", tools: Sequence[Tool] = ()
) -> tuple[list[int], int]:
    """A training example: (tokens, start) where tokens[start:] is the last assistant turn — the target.

    The history is rendered exactly as at inference (earlier reasoning dropped), the target keeps its
    reasoning, and ends with `<|return|>` after a final answer or `<|call|>` after a tool call.
    """
    split = len(messages)
    while split > 0 and messages[split - 1].role == "assistant":
        split -= 1
    if split == len(messages):
        raise InvalidRequest("a training conversation must end with an assistant turn", param="messages")
    prompt = render_prompt(messages[:split], effort=effort, tools=tools)
    enc = encoding()
    target: list[int] = []
    for message in _history(messages[split:]):
        target.extend(enc.render(message))
    header = enc.encode("<|start|>assistant", allowed_special="all")
    assert target[: len(header)] == header, "an assistant turn starts with its header"
    target = target[len(header) :]  # the prompt already ends with <|start|>assistant
    if target[-1] == special_token_id("<|end|>"):
        target[-1] = special_token_id("<|return|>")
    return prompt + target, len(prompt)


def text_tokens(text: str) -> list[int]:
    """Plain text to token ids (special tokens are encoded as text, never as control tokens)."""
    return list(encoding().encode(text, allowed_special=set()))


def decode(tokens: Sequence[int]) -> str:
    return encoding().decode_utf8(list(tokens))


def _function_name(recipient: str | None) -> str | None:
    if recipient and recipient.startswith("functions."):
        return recipient.removeprefix("functions.")
    return None


def completion_from_messages(messages: Iterable[oh.Message]) -> Completion:
    out = Completion()
    for m in messages:
        text = "".join(c.text for c in m.content if isinstance(c, oh.TextContent))
        if name := _function_name(m.recipient):
            out.tool_calls.append(ToolCall(name=name, arguments=text))
        elif m.channel == "analysis":
            out.analysis += text
        elif m.channel == "commentary":
            out.commentary += text
        else:
            out.final += text
    return out


def parse_completion(tokens: Sequence[int]) -> Completion:
    """Parse the assistant's tokens (everything after `<|start|>assistant`). Raises InvalidRequest on bad harmony."""
    parser = StreamParser()
    for t in tokens:
        parser.feed(t)
    return parser.finish()


@dataclass
class Delta:
    """A piece of streamed output: `text` appended on `channel`, or (for tool calls) to a call's arguments."""

    channel: str
    text: str
    tool_name: str | None = None  # set when the text is arguments of a call to this function
    new_message: bool = False  # first delta of a new message (a new tool call starts here)


class MalformedHarmony(InvalidRequest):
    """The model produced tokens that do not follow the harmony grammar."""


class StreamParser:
    """Incremental harmony parser: feed one token at a time, get text deltas per channel.

    Wraps `openai_harmony.StreamableParser`; its errors become MalformedHarmony so callers can
    fall back to returning raw text instead of failing the request.
    """

    def __init__(self) -> None:
        self._parser = oh.StreamableParser(encoding(), oh.Role.ASSISTANT)
        self.tokens: list[int] = []

    def feed(self, token: int) -> Delta | None:
        self.tokens.append(token)
        try:
            self._parser.process(token)
        except oh.HarmonyError as e:
            raise MalformedHarmony(f"model output is not valid harmony: {e}") from e
        # (a token that ends a message carries no text, so the first delta of a message is the one whose
        # text is all the message's content so far; `parser.messages` is not read: it round-trips JSON)
        text = self._parser.last_content_delta
        if not text:
            return None
        channel = self._parser.current_channel or "final"
        name = _function_name(self._parser.current_recipient)
        return Delta(
            channel=channel,
            text=text,
            tool_name=name,
            new_message=len(self._parser.current_content) == len(text),
        )

    def finish(self) -> Completion:
        try:
            self._parser.process_eos()
        except oh.HarmonyError as e:
            raise MalformedHarmony(f"model output is not valid harmony: {e}") from e
        return completion_from_messages(self._parser.messages)


def tool_arguments_valid(arguments: str) -> bool:
    try:
        return isinstance(json.loads(arguments), dict)
    except json.JSONDecodeError:
        return False
