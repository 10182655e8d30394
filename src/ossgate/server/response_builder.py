"""OutputEvents -> Responses API output items and streaming events.

One builder serves both modes: streaming sends the events it returns, non-streaming ignores them and
reads `output` at the end. Items: `reasoning` (content: reasoning_text), `function_call`, `message`
(content: output_text). Event order follows OpenAI's: output_item.added, content_part.added, deltas,
*.done, content_part.done, output_item.done.
"""

from __future__ import annotations

import uuid
from typing import Any

from ossgate.backends.base import OutputEvent
from ossgate.server.assemble import logprob_json


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponseBuilder:
    def __init__(self, want_logprobs: bool = False) -> None:
        self.output: list[dict[str, Any]] = []
        self.sequence = 0
        self.want_logprobs = want_logprobs
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._tool_items: dict[int, dict[str, Any]] = {}

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        out = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return out

    @property
    def _index(self) -> int:
        return len(self.output) - 1

    def _start(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self.close()
        self.output.append(item)
        self._open = item
        events.append(self.event("response.output_item.added", output_index=self._index, item=dict(item)))
        if item["type"] == "reasoning":
            events.append(
                self.event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._index,
                    content_index=0,
                    part={"type": "reasoning_text", "text": ""},
                )
            )
        elif item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                self.event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._index,
                    content_index=0,
                    part=part,
                )
            )
        return events

    def feed(self, ev: OutputEvent) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        item = self._open
        if ev.kind == "reasoning":
            if item is None or item["type"] != "reasoning":
                events += self._start(
                    {
                        "id": _id("rs"),
                        "type": "reasoning",
                        "summary": [],
                        "status": "in_progress",
                        "content": [{"type": "reasoning_text", "text": ""}],
                    }
                )
            item = self._open
            item["content"][0]["text"] += ev.text
            events.append(
                self.event(
                    "response.reasoning_text.delta",
                    item_id=item["id"],
                    output_index=self._index,
                    content_index=0,
                    delta=ev.text,
                )
            )
        elif ev.kind == "content":
            if item is None or item["type"] != "message":
                events += self._start(
                    {
                        "id": _id("msg"),
                        "type": "message",
                        "role": "assistant",
                        "status": "in_progress",
                        "content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}],
                    }
                )
            item = self._open
            part = item["content"][0]
            part["text"] += ev.text
            logprobs = [logprob_json(lp) for lp in ev.logprobs or []] if self.want_logprobs else []
            part["logprobs"] += logprobs
            events.append(
                self.event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=self._index,
                    content_index=0,
                    delta=ev.text,
                    logprobs=logprobs,
                )
            )
        elif ev.kind == "tool_call":
            if ev.tool_name is not None:
                events += self._start(
                    {
                        "id": _id("fc"),
                        "type": "function_call",
                        "status": "in_progress",
                        "call_id": ev.tool_id or _id("call"),
                        "name": ev.tool_name,
                        "arguments": "",
                    }
                )
                self._tool_items[ev.tool_index] = self._open
            item = self._tool_items[ev.tool_index]
            item["arguments"] += ev.text
            if ev.text:
                events.append(
                    self.event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=self.output.index(item),
                        delta=ev.text,
                    )
                )
        return events

    def close(self, status: str = "completed") -> list[dict[str, Any]]:
        """End the open item (on a new item, or at the end of the response)."""
        item, self._open = self._open, None
        if item is None:
            return []
        item["status"] = status
        i = self.output.index(item)
        events = []
        if item["type"] == "reasoning":
            text = item["content"][0]["text"]
            events.append(
                self.event(
                    "response.reasoning_text.done", item_id=item["id"], output_index=i, content_index=0, text=text
                )
            )
            events.append(
                self.event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=i,
                    content_index=0,
                    part={"type": "reasoning_text", "text": text},
                )
            )
        elif item["type"] == "message":
            part = item["content"][0]
            events.append(
                self.event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=i,
                    content_index=0,
                    text=part["text"],
                    logprobs=part["logprobs"],
                )
            )
            events.append(
                self.event("response.content_part.done", item_id=item["id"], output_index=i, content_index=0, part=part)
            )
        else:
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=i,
                    arguments=item["arguments"],
                    name=item["name"],
                )
            )
        events.append(self.event("response.output_item.done", output_index=i, item=item))
        return events
