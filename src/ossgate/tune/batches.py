"""Packing token sequences into training batches for `Transformer.forward(tokens, positions, seq_lens)`."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Example:
    """One sequence and its loss mask: where the next-token prediction of each token is trained, and how much."""

    tokens: list[int]
    # mask[i]: the loss weight of token i as a target (predicted from tokens[:i]); False/0 is not a target,
    # True/1 an ordinary one
    mask: list[bool] | list[float]


@dataclass
class Batch:
    tokens: torch.Tensor  # (T,) packed input ids
    positions: torch.Tensor  # (T,) restart at 0 for every sequence
    seq_lens: list[int]
    targets: torch.Tensor  # (T,) the next token of each input token (meaningless where not `weights`)
    weights: torch.Tensor  # (T,) float: this input token's prediction's weight in the loss (0: not a target)

    @property
    def targeted(self) -> torch.Tensor:
        """(T,) bool: the positions whose prediction counts in the loss."""
        return self.weights > 0

    @property
    def n_targets(self) -> int:
        return int(self.targeted.sum())


def pack(examples: Sequence[Example]) -> Batch:
    """Lay sequences end to end; each predicts its own next tokens, never across a boundary."""
    tokens, positions, targets, weights, lens = [], [], [], [], []
    for ex in examples:
        n = len(ex.tokens) - 1  # the last token predicts nothing
        tokens += ex.tokens[:-1]
        positions += range(n)
        targets += ex.tokens[1:]
        weights += ex.mask[1:]
        lens.append(n)
    return Batch(
        torch.tensor(tokens),
        torch.tensor(positions),
        lens,
        torch.tensor(targets),
        torch.tensor(weights, dtype=torch.float32),
    )


def batches(examples: Sequence[Example], batch_tokens: int, seed: int) -> Iterator[Batch]:
    """Endless shuffled epochs, greedily packed up to `batch_tokens` tokens a batch."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        group, size = [], 0
        for i in order:
            n = len(examples[i].tokens)
            if group and size + n > batch_tokens:
                yield pack(group)
                group, size = [], 0
            group.append(examples[i])
            size += n
        if group:
            yield pack(group)
