"""Engine tokens -> OutputEvents for one assistant turn: harmony channels, tool calls, stop strings, logprobs.

Kept apart from the engine so the mapping can be tested token by token. Real models sometimes break the
harmony grammar; then everything not yet returned is decoded as plain text and returned as content,
and the turn ends with finish_reason `malformed_harmony` — never an exception.
"""

from __future__ import annotations

import uuid

from ossgate import harmony
from ossgate.backends.base import OutputEvent, TokenLogprob, Usage
from ossgate.engine.request import TokenEvent


def token_text(token: int) -> str:
    return harmony.encoding().decode([token])


def token_logprob(token: int, logprob: float, top: list[tuple[int, float]]) -> TokenLogprob:
    text = token_text(token)
    alternatives = [(s := token_text(t), lp, list(s.encode())) for t, lp in top]
    return TokenLogprob(token=text, logprob=logprob, bytes=list(text.encode()), top=alternatives)


class StopMatcher:
    """Cuts the answer at the first stop string, holding back text that could be the start of one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """The part of `text` that is safe to emit now."""
        if not self.stops:
            return text
        text = self.held + text
        cut = min((i for s in self.stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.held, self.stopped = "", True
            return text[:cut]
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


class TurnDecoder:
    """Feed engine TokenEvents; get OutputEvents. `prefill` = tokens already placed after `<|start|>assistant`."""

    def __init__(self, prompt_tokens: int, prefill: list[int], stops: list[str], logprobs: bool) -> None:
        self.parser = harmony.StreamParser()
        for t in prefill:
            self.parser.feed(t)
        self.usage = Usage(prompt_tokens=prompt_tokens)
        self.stop = StopMatcher(stops)
        self.want_logprobs = logprobs
        self.malformed = False
        self.pending: list[TokenEvent] = []  # tokens fed since the last emitted text (headers, partial UTF-8)
        self.tool_calls = 0  # a forced call's header is in the prefill; its first argument delta opens call 0

    @property
    def stopped(self) -> bool:
        """A stop string was reached: the caller ends the generation."""
        return self.stop.stopped

    def feed(self, ev: TokenEvent) -> list[OutputEvent]:
        if ev.token < 0:  # aborted / failed: the engine's marker, not a token
            return []
        self.usage.completion_tokens += 1
        if self.malformed:
            return self._raw([ev])
        try:
            delta = self.parser.feed(ev.token)
        except harmony.MalformedHarmony:
            self.malformed = True
            return self._raw([*self.pending, ev])
        if delta is None:
            self.pending.append(ev)
            return []
        self.pending = []
        lp = [token_logprob(ev.token, ev.logprob, ev.top_logprobs)] if self.want_logprobs else None
        if delta.tool_name is not None:
            if delta.new_message:
                self.tool_calls += 1
                return [
                    OutputEvent(
                        "tool_call",
                        delta.text,
                        tool_index=self.tool_calls - 1,
                        tool_name=delta.tool_name,
                        tool_id=f"call_{uuid.uuid4().hex[:24]}",
                    )
                ]
            return [OutputEvent("tool_call", delta.text, tool_index=self.tool_calls - 1)]
        if delta.channel == "analysis":
            self.usage.reasoning_tokens += 1
            return [OutputEvent("reasoning", delta.text, logprobs=lp)]
        return self._content(delta.text, lp)

    def _content(self, text: str, lp: list[TokenLogprob] | None) -> list[OutputEvent]:
        if self.stop.stopped:
            return []
        text = self.stop.push(text)
        return [OutputEvent("content", text, logprobs=lp)] if text or lp else []

    def _raw(self, events: list[TokenEvent]) -> list[OutputEvent]:
        """Tokens that are not valid harmony, returned as plain text (harmony's control tokens dropped)."""
        events = [e for e in events if not harmony.encoding().is_special_token(e.token)]
        self.pending = []
        if not events:
            return []
        lp = [token_logprob(e.token, e.logprob, e.top_logprobs) for e in events] if self.want_logprobs else None
        return self._content(harmony.encoding().decode([e.token for e in events]), lp)

    def finish(self, engine_reason: str) -> list[OutputEvent]:
        """The closing events, given the engine's finish reason (stop | length | abort | error)."""
        events: list[OutputEvent] = []
        if not self.malformed and not self.stop.stopped:
            try:
                self.parser.finish()
            except harmony.MalformedHarmony:
                # cut off mid-header (length/abort) or broken at the very end: return what it wrote as text
                if engine_reason == "stop":
                    self.malformed = True
                events += self._raw(self.pending)
        if tail := self.stop.flush():
            events.append(OutputEvent("content", tail))
        if self.stop.stopped:
            reason = "stop"
        elif self.malformed:
            reason = "malformed_harmony"
        elif engine_reason == "stop" and self.tool_calls:
            reason = "tool_calls"
        else:
            reason = engine_reason
        events.append(OutputEvent("finish", finish_reason=reason, usage=self.usage))
        return events
