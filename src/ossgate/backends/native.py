"""The native backend: the ossgate engine, with harmony rendering and parsing.

The engine's step loop runs in its own process (`engine = "process"`, the default: see
engine/engine_process.py) or in a thread of the server (`engine = "thread"`); both offer the same interface.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import torch

from ossgate import harmony, structured
from ossgate.backends.base import (
    ChatTurn,
    CompletionEvent,
    CompletionTurn,
    OutputEvent,
    TokenLogprob,
    Usage,
)
from ossgate.backends.turn_decoder import StopMatcher, TurnDecoder, token_logprob
from ossgate.engine.async_engine import AsyncEngine
from ossgate.engine.core import EngineConfig, EngineCore
from ossgate.engine.engine_process import EngineSpec, ProcessEngine
from ossgate.engine.request import TokenEvent
from ossgate.engine.sampling import SamplingParams
from ossgate.errors import CheckpointError, ContextOverflow, InvalidRequest
from ossgate.settings import ModelSettings

log = logging.getLogger(__name__)

# the grammar makes `tool_choice: required` end in a call; saying so too keeps the analysis consistent with it
REQUIRED_TOOL_INSTRUCTION = "You must call one of the provided functions now; do not answer the user directly."


def checkpoint_path(settings: ModelSettings) -> Path:
    """The model directory: the configured path, else the embedded nano model."""
    if settings.path is not None:
        return settings.path
    try:
        from ossgate.nano import model_path  # noqa: PLC0415 - optional: built by the nano trainer
    except ImportError as e:
        raise CheckpointError(
            f"model {settings.name!r} has no path and the embedded nano model is not available; "
            "set `path` under [[models]] in ossgate.toml or pass --model DIR"
        ) from e
    return Path(model_path())


def end_of_text_id() -> int:
    return harmony.special_token_id("<|endoftext|>")


class NativeBackend:
    kind = "native"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.max_running = settings.max_running
        self.context: int | None = settings.context
        self.engine: AsyncEngine | ProcessEngine | None = None
        self._active: set[str] = set()

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        path = checkpoint_path(self.settings)
        log.info("loading %s from %s (engine: %s)", self.name, path, self.settings.engine)
        if self.settings.engine == "process":
            self.engine = ProcessEngine(
                EngineSpec(
                    checkpoint=path,
                    dtype=self.settings.dtype,
                    device=self.settings.device,
                    config=self._engine_config(None),
                    torch_threads=torch.get_num_threads(),  # as configured for this server (torch_threads)
                    log_level=logging.getLogger().getEffectiveLevel(),
                )
            )
            await self.engine.start()
            self.context = self._context_of(self.engine)
        else:
            from ossgate.model.checkpoint import load_model  # noqa: PLC0415 - torch-heavy, load in lifespan only

            dtype = torch.bfloat16 if self.settings.dtype == "bfloat16" else torch.float32
            model = await asyncio.to_thread(load_model, path, dtype, self.settings.device, False)
            self.engine = AsyncEngine(EngineCore(model, self._engine_config(model.config.max_position_embeddings)))
            self.engine.start()
            self.context = self._context_of(self.engine)
        await asyncio.to_thread(harmony.encoding)  # load the vocabulary now, not on the first request
        await self._warm_up()

    def _engine_config(self, model_context: int | None) -> EngineConfig:
        """model_context None: the engine caps the context at the model's own (it knows the model)."""
        context = self.settings.context
        if context is not None and model_context is not None:
            context = min(context, model_context)
        return EngineConfig(
            max_running=self.settings.max_running,
            max_tokens_per_step=self.settings.max_tokens_per_step,
            kv_budget_bytes=self.settings.kv_budget_mb * 1024**2,
            prefix_cache_bytes=self.settings.prefix_cache_mb * 1024**2,
            max_context=context,
        )

    def _context_of(self, engine) -> int:
        model_context = engine.model_config.max_position_embeddings
        return min(self.settings.context or model_context, model_context)

    async def _warm_up(self) -> None:
        """One short generation at start-up: the first forward pass builds/loads kernels (seconds to tens of
        seconds on CPU), which should not land on the first client's request."""
        prompt = harmony.render_prompt([harmony.ChatMessage("user", "hi")])
        # under a grammar, so the engine also builds the grammar tokenizer (~2 s) before the first tool call
        grammar = structured.turn_grammar(final_schema=structured.ANY_OBJECT)
        params = SamplingParams(max_tokens=2, temperature=0, grammar=grammar)
        stream = await self.engine.generate(prompt, params, "warm-up")
        async for _ in stream:
            pass

    @property
    def alive(self) -> bool:
        """False once the engine is gone (its process died): every request fails with 503."""
        return self.engine is not None and self.engine.alive

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.aclose()

    def abort(self, request_id: str) -> None:
        if self.engine is not None and request_id in self._active:
            self.engine.abort(request_id)  # never blocks: the engine ends it before its next step

    def abort_all(self) -> None:
        if self.engine is not None:
            for request_id in list(self._active):
                self.engine.abort(request_id)

    def stats(self) -> dict[str, float]:
        if self.engine is None:
            return {}
        s = self.engine.stats()
        return {
            "running": s.running,
            "waiting": s.waiting,
            "kv_usage": s.kv_usage,
            "tokens_per_second": s.tokens_per_second,
            "tokens_generated": s.tokens_generated,
            "tokens_prefilled": s.tokens_prefilled,
            "prefix_cache_hit_tokens": s.prefix_cache_hit_tokens,
        }

    # ---- limits --------------------------------------------------------------------------------

    def _max_tokens(self, prompt_len: int, asked: int | None) -> int:
        """Tokens the turn may generate; asking for more than the context holds is the caller's mistake."""
        assert self.context is not None and self.engine is not None, "backend not started"
        room = self.context - prompt_len
        if room < 1:
            raise ContextOverflow(
                f"the prompt has {prompt_len} tokens; this model's context is {self.context} tokens. "
                "Shorten the conversation.",
                param="messages",
            )
        if asked is not None:
            if prompt_len + asked > self.context:
                raise ContextOverflow(
                    f"the prompt has {prompt_len} tokens and max_tokens is {asked}: {prompt_len + asked} is over "
                    f"this model's context of {self.context} tokens. Set max_tokens to at most {room}.",
                    param="max_tokens",
                )
            return asked
        budget = self.engine.budget
        fits = (budget.limit_bytes - budget.per_sequence) // budget.per_token - prompt_len
        default = self.settings.default_max_tokens or room
        return max(1, min(default, room, fits))

    def _params(self, turn_sampling, prompt_len: int, stop_ids: list[int]) -> SamplingParams:
        s = turn_sampling
        params = SamplingParams(
            max_tokens=self._max_tokens(prompt_len, s.max_tokens),
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            stop_token_ids=stop_ids,
            logprobs=s.logprobs,
        )
        params.validate()
        return params

    # ---- chat ----------------------------------------------------------------------------------

    def render(self, turn: ChatTurn) -> tuple[list[int], list[int]]:
        """(prompt ids, prefill): prefill is the forced tool call's header, already part of the prompt."""
        messages, tools = turn.messages, turn.tools
        if turn.tool_choice == "none":
            tools = []
        elif turn.tool_choice == "required" and not turn.forced_tool:
            messages = [*messages, harmony.ChatMessage("developer", REQUIRED_TOOL_INSTRUCTION)]
        prompt = harmony.render_prompt(messages, effort=turn.effort, tools=tools, response_format=turn.response_format)
        prefill: list[int] = []
        if turn.forced_tool:
            header = f"<|channel|>commentary to=functions.{turn.forced_tool} <|constrain|>json<|message|>"
            prefill = list(harmony.encoding().encode(header, allowed_special="all"))
        return prompt + prefill, prefill

    @staticmethod
    def grammar(turn: ChatTurn) -> str | None:
        """What the turn must follow: calls only to declared tools with schema-valid arguments, JSON finals."""
        tools = [] if turn.tool_choice == "none" else turn.tools
        return structured.turn_grammar(
            tools,
            require_call=turn.tool_choice == "required",
            forced_tool=next((t for t in tools if t.name == turn.forced_tool), None),
            final_schema=turn.response_format.schema if turn.response_format else None,
        )

    async def chat(self, turn: ChatTurn) -> AsyncIterator[OutputEvent]:
        assert self.engine is not None, "backend not started"
        prompt, prefill = self.render(turn)
        params = self._params(turn.sampling, len(prompt), harmony.stop_token_ids())
        params.grammar = self.grammar(turn)
        request_id = turn.request_id or uuid.uuid4().hex
        stream = await self.engine.generate(prompt, params, request_id=request_id)
        decoder = TurnDecoder(len(prompt), prefill, turn.sampling.stop, turn.sampling.logprobs is not None)
        return self._chat_events(stream, decoder, request_id)

    async def _chat_events(
        self, stream: AsyncIterator[TokenEvent], decoder: TurnDecoder, request_id: str
    ) -> AsyncIterator[OutputEvent]:
        self._active.add(request_id)
        reason = "abort"
        try:
            async for ev in stream:
                for out in decoder.feed(ev):
                    yield out
                if ev.finish_reason is not None:
                    reason = ev.finish_reason
                    break
                if decoder.stopped:
                    reason = "stop"
                    break
            for out in decoder.finish(reason):
                yield out
        finally:
            self._active.discard(request_id)
            await stream.aclose()  # frees the KV slot at once if the turn ended early or the client left

    # ---- raw completions -----------------------------------------------------------------------

    def _prompt_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return harmony.text_tokens(prompt)
        vocab = self.engine.model_config.vocab_size
        if bad := [t for t in prompt if not 0 <= t < vocab]:
            raise InvalidRequest(f"prompt token {bad[0]} is outside the vocabulary (0..{vocab - 1})", param="prompt")
        return list(prompt)

    async def complete(self, turn: CompletionTurn) -> AsyncIterator[CompletionEvent]:
        assert self.engine is not None, "backend not started"
        prompt = self._prompt_ids(turn.prompt)
        if not prompt:
            raise InvalidRequest("the prompt is empty", param="prompt")
        echo_logprobs = None
        if turn.echo and turn.sampling.logprobs is not None:
            echo_logprobs = await self.prompt_logprobs(prompt, turn.sampling.logprobs)
        echo = CompletionEvent(text=harmony.encoding().decode(prompt), logprobs=echo_logprobs) if turn.echo else None
        if turn.sampling.max_tokens == 0:  # scoring only (lm-evaluation-harness log-likelihood)
            if len(prompt) > (self.context or 0):
                raise ContextOverflow(f"the prompt has {len(prompt)} tokens; the context is {self.context}")
            return self._only(echo, Usage(prompt_tokens=len(prompt)))
        params = self._params(turn.sampling, len(prompt), [end_of_text_id()])
        request_id = turn.request_id or uuid.uuid4().hex
        stream = await self.engine.generate(prompt, params, request_id=request_id)
        return self._completion_events(stream, echo, len(prompt), turn, request_id)

    async def _only(self, event: CompletionEvent | None, usage: Usage) -> AsyncIterator[CompletionEvent]:
        if event is not None:
            yield event
        yield CompletionEvent(finish_reason="length", usage=usage)

    async def _completion_events(
        self, stream, echo: CompletionEvent | None, prompt_len: int, turn: CompletionTurn, request_id: str
    ) -> AsyncIterator[CompletionEvent]:
        self._active.add(request_id)
        usage = Usage(prompt_tokens=prompt_len)
        stops = StopMatcher(turn.sampling.stop)
        reason = "abort"
        try:
            if echo is not None:
                yield echo
            async for ev in stream:
                if ev.token >= 0 and ev.token != end_of_text_id():
                    usage.completion_tokens += 1
                    text = stops.push(harmony.encoding().decode([ev.token]))
                    lp = (
                        [token_logprob(ev.token, ev.logprob, ev.top_logprobs)]
                        if turn.sampling.logprobs is not None
                        else None
                    )
                    if text or lp:
                        yield CompletionEvent(text=text, logprobs=lp)
                elif ev.token >= 0:
                    usage.completion_tokens += 1
                if ev.finish_reason is not None:
                    reason = ev.finish_reason
                    break
                if stops.stopped:
                    reason = "stop"
                    break
            if tail := stops.flush():
                yield CompletionEvent(text=tail)
            yield CompletionEvent(finish_reason=reason, usage=usage)
        finally:
            self._active.discard(request_id)
            await stream.aclose()

    async def prompt_logprobs(self, prompt: list[int], top_n: int) -> list[TokenLogprob | None]:
        """Log-probability of each prompt token given the ones before it (None for the first), plus top-N."""
        scores = await self.engine.score(prompt, top_n)
        return [None if s is None else token_logprob(*s) for s in scores]
