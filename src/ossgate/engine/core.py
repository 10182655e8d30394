"""EngineCore: one step = schedule -> run the model on the packed chunks -> sample -> update."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import torch

from ossgate.engine.constraint import Constraint
from ossgate.engine.kv_cache import KVBudget, SequenceKV
from ossgate.engine.prefix_cache import PrefixCache
from ossgate.engine.request import Request, TokenEvent
from ossgate.engine.sampling import sample
from ossgate.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from ossgate.model.transformer import Transformer

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    max_running: int = 32
    max_tokens_per_step: int = 512
    kv_budget_bytes: int = 2 * 1024**3
    prefix_cache_bytes: int = 256 * 1024**2
    max_context: int | None = None  # default: the model's max_position_embeddings


@functools.cache
def _harmony_ids() -> tuple[int, int, int]:
    """<|end|>, <|start|> and the first token of "developer" (the tokenizer is slow to ask, so once)."""
    from ossgate.harmony import special_token_id, text_tokens

    return special_token_id("<|end|>"), special_token_id("<|start|>"), text_tokens("developer")[0]


def harmony_prefix_boundary(prompt: list[int]) -> int:
    """Length of the prompt's cacheable head: through the developer message (else the system message)."""
    end, start, developer = _harmony_ids()
    boundary, last_start = 0, -1
    for i, t in enumerate(prompt):  # one pass: prompts reach 131072 tokens
        if t == start:
            last_start = i
        elif t == end:
            boundary = boundary or i + 1  # the first message (system)
            if 0 <= last_start < len(prompt) - 1 and prompt[last_start + 1] == developer:
                return i + 1
    return boundary


class EngineCore:
    """Synchronous engine: owns the model, the scheduler and the KV budget. Not thread-safe by itself."""

    def __init__(self, model: Transformer, config: EngineConfig | None = None) -> None:
        self.model = model
        self.config = config or EngineConfig()
        mc = model.config
        dtype_bytes = torch.finfo(model.dtype).bits // 8
        self.budget = KVBudget(mc, self.config.kv_budget_bytes, dtype_bytes)
        sched = SchedulerConfig(
            max_running=self.config.max_running,
            max_tokens_per_step=self.config.max_tokens_per_step,
            max_context=self.config.max_context or mc.max_position_embeddings,
        )
        self.prefix_cache = PrefixCache(self.config.prefix_cache_bytes)
        self.scheduler = Scheduler(sched, self.budget, self.make_cache, self.prefix_cache, harmony_prefix_boundary)
        self.tokens_generated = 0
        self.tokens_prefilled = 0

    def make_cache(self, capacity: int) -> SequenceKV:
        return SequenceKV(self.model.config, capacity, self.model.dtype, self.model.device)

    def add(self, request: Request) -> None:
        self.scheduler.add(request)

    def abort(self, request_id: str) -> Request | None:
        return self.scheduler.abort(request_id)

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    @torch.inference_mode()
    def step(self) -> list[TokenEvent]:
        out = self.scheduler.schedule()
        if not out.chunks:
            return []
        samples = {}
        rows = self._forward(out)
        for chunk, logits in rows:
            r = chunk.request
            if r.params.grammar is not None:
                if r.constraint is None:  # here, not at admission: only the engine needs the matcher
                    r.constraint = Constraint(r.params.grammar)
                r.constraint.mask(logits)
            samples[r.request_id] = s = sample(logits, r.params, r.generator, r.all_tokens)
            if r.constraint is not None:
                r.constraint.advance(s.token)
        for c in out.chunks:
            if c.samples:
                self.tokens_generated += 1
            else:
                self.tokens_prefilled += c.num_tokens
        return self.scheduler.update_from_output(out, samples, time.perf_counter())

    def _forward(self, out: SchedulerOutput):
        device = self.model.device
        tokens, positions, last_rows = [], [], []
        offset = 0
        for c in out.chunks:
            toks = c.request.all_tokens[c.start : c.start + c.num_tokens]
            tokens.extend(toks)
            positions.extend(range(c.start, c.start + c.num_tokens))
            offset += c.num_tokens
            if c.samples:
                last_rows.append(offset - 1)
        hidden = self.model(
            torch.tensor(tokens, device=device),
            torch.tensor(positions, device=device),
            [c.num_tokens for c in out.chunks],
            [c.request.cache for c in out.chunks],
        )
        if not last_rows:
            return []
        logits = self.model.logits(hidden[torch.tensor(last_rows, device=device)]).float().cpu()  # (R, V)
        sampled = [c for c in out.chunks if c.samples]
        return list(zip(sampled, logits, strict=True))
