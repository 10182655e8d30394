"""Sampling parameters and the sampler: temperature, top-k, top-p, min-p, seeds, logprobs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ossgate.errors import InvalidRequest


@dataclass
class SamplingParams:
    """What a request asks of the sampler. Defaults match OpenAI's API."""

    max_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0  # keep tokens whose probability is at least min_p x the top one's
    seed: int | None = None  # same seed, same prompt -> same sample, whatever else is in the batch
    stop_token_ids: list[int] = field(default_factory=list)
    logprobs: int | None = None  # None = off; N = also return the N most likely alternatives
    repetition_penalty: float = 1.0
    grammar: str | None = None  # Lark for llguidance (ossgate/structured.py): tokens outside it are masked

    def validate(self) -> None:
        checks = [
            (self.max_tokens >= 1, "max_tokens", "must be at least 1"),
            (0 <= self.temperature <= 2, "temperature", "must be between 0 and 2"),
            (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (self.top_k >= 0, "top_k", "must be >= 0"),
            (0 <= self.min_p <= 1, "min_p", "must be between 0 and 1"),
            (self.logprobs is None or 0 <= self.logprobs <= 20, "top_logprobs", "must be between 0 and 20"),
            (self.repetition_penalty > 0, "repetition_penalty", "must be > 0"),
        ]
        for ok, param, msg in checks:
            if not ok:
                raise InvalidRequest(f"{param} {msg}", param=param)


@dataclass
class Sample:
    token: int
    logprob: float  # nan when the request did not ask for logprobs
    top: list[tuple[int, float]]  # (token, logprob) of the most likely alternatives, if asked


def _filter(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """logits (V,) float32 -> logits with filtered-out tokens at -inf."""
    if p.top_k and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if p.min_p > 0:
        logits = logits.masked_fill(probs < p.min_p * probs.max(), float("-inf"))
    if p.top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = sorted_probs.cumsum(-1)
        drop_sorted = cumulative - sorted_probs > p.top_p  # keep the smallest set whose mass reaches top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, p: SamplingParams, generator: torch.Generator | None, history: list[int]) -> Sample:
    """Pick the next token from one sequence's logits (V,). Reported logprobs are of these logits, before
    temperature and filters (after a grammar's mask, which is applied by the caller)."""
    logits = logits.float()
    if p.repetition_penalty != 1.0 and history:
        seen = torch.tensor(sorted(set(history)), device=logits.device)
        vals = logits[seen]
        logits = logits.clone()
        logits[seen] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
    if p.temperature == 0:
        token = int(torch.argmax(logits))
    else:
        probs = torch.softmax(_filter(logits / p.temperature, p), dim=-1)
        token = int(torch.multinomial(probs, 1, generator=generator))
    if p.logprobs is None:  # not asked for: a pass over the vocabulary saved on every token
        return Sample(token=token, logprob=math.nan, top=[])
    logprobs = torch.log_softmax(logits, dim=-1)
    top: list[tuple[int, float]] = []
    if p.logprobs:
        values, ids = torch.topk(logprobs, p.logprobs)
        top = list(zip(ids.tolist(), values.tolist(), strict=True))
    return Sample(token=token, logprob=float(logprobs[token]), top=top)
