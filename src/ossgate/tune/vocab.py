"""A compact vocabulary: train on the few thousand token ids the data uses, export at full size.

A model over 201088 ids spends most of its parameters (and optimizer state) on embedding rows that
never receive a gradient. `CompactVocab` maps the used ids to 0..U-1 so the trained Transformer has
vocab_size U; `expand` writes its rows back into full-size tables whose unused rows are exactly zero.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class CompactVocab:
    """Sorted used token ids <-> compact indices."""

    def __init__(self, ids: Iterable[int], full_size: int) -> None:
        self.ids = sorted(set(ids))
        self.full_size = full_size
        assert self.ids and self.ids[-1] < full_size, (
            f"token id {self.ids[-1] if self.ids else None} outside vocabulary {full_size}"
        )
        lookup = torch.full((full_size,), -1, dtype=torch.long)
        lookup[torch.tensor(self.ids)] = torch.arange(len(self.ids))
        self._lookup = lookup

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_unused(self) -> int:
        return self.full_size - len(self.ids)

    def compact(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self._lookup[tokens]
        if (out < 0).any():
            bad = tokens[out < 0][0].item()
            raise ValueError(f"token id {bad} is not in the compact vocabulary")
        return out

    def expand_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(U, D) compact rows -> (full_size, D), zero where the id is unused."""
        full = torch.zeros(self.full_size, rows.shape[1], dtype=rows.dtype)
        full[torch.tensor(self.ids)] = rows
        return full
