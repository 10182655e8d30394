"""Grammar-constrained sampling: llguidance masks the tokens that would leave a request's grammar.

The grammar (Lark, built by ossgate/structured.py) travels in SamplingParams as text, so it crosses to
the engine process like any other parameter; the matcher that follows it lives with the request here.
"""

from __future__ import annotations

import functools

import llguidance
import llguidance.torch
import torch
from tiktoken.load import load_tiktoken_bpe

from ossgate import harmony
from ossgate.model.tokenizer_files import O200K_PATTERN, VOCAB_SIZE, special_tokens
from ossgate.vocab import O200K_FILENAME, provision_vocabulary


@functools.cache
def tokenizer() -> llguidance.LLTokenizer:
    """o200k_harmony for llguidance, from the offline vocabulary (about 2 s, once per process)."""
    return llguidance.LLTokenizer.from_tiktoken(
        encoder=load_tiktoken_bpe(str(provision_vocabulary() / O200K_FILENAME)),
        special_tokens=special_tokens(),
        pattern=O200K_PATTERN,
        eos_token=harmony.special_token_id("<|return|>"),
        n_vocab=VOCAB_SIZE,
    )


class Constraint:
    """One request's position in its grammar."""

    def __init__(self, grammar: str) -> None:
        grammar = llguidance.LLMatcher.grammar_from_lark(grammar)
        self.matcher = llguidance.LLMatcher(tokenizer(), grammar, log_level=0)  # errors are raised, not printed
        if self.matcher.is_error():
            raise ValueError(self.matcher.get_error())
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, VOCAB_SIZE)

    def mask(self, logits: torch.Tensor) -> None:
        """Set every token the grammar forbids to -inf, in place (float32 logits (V,), one row of the step's)."""
        llguidance.torch.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        llguidance.torch.apply_token_bitmask_inplace(logits, self.bitmask[0])

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise ValueError(self.matcher.get_error() or f"token {token} leaves the grammar")

    @property
    def done(self) -> bool:
        return self.matcher.is_stopped()
