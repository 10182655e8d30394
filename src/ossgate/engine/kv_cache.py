"""Per-sequence KV cache and the memory budget shared by all sequences.

Sliding-window layers keep only the last `window` positions in a ring buffer (their queries can't see
further back), so their cost is fixed per sequence; full-attention layers grow with the sequence.
A sequence reserves its worst case (prompt + max_tokens) at admission, so a running sequence never
runs out of cache mid-generation and the scheduler needs no preemption.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ossgate.errors import ContextOverflow
from ossgate.model.config import ModelConfig


class SequenceKV:
    """The KV cache of one sequence across all layers; implements the model's `KVCache.update` contract."""

    def __init__(self, config: ModelConfig, capacity: int, dtype: torch.dtype, device: torch.device | str) -> None:
        self.config, self.capacity, self.dtype, self.device = config, capacity, dtype, device
        G, d, W = config.num_key_value_heads, config.head_dim, config.sliding_window
        self.length = 0  # positions stored (the same for every layer once a step completes)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.ring_pos: list[torch.Tensor | None] = []
        for layer in range(config.num_hidden_layers):
            if config.is_sliding(layer):
                size = W
                self.ring_pos.append(torch.full((W,), -1, dtype=torch.long, device=device))
            else:
                size = min(capacity, 256)  # grows by doubling up to `capacity`
                self.ring_pos.append(None)
            self.k.append(torch.zeros(size, G, d, dtype=dtype, device=device))
            self.v.append(torch.zeros(size, G, d, dtype=dtype, device=device))

    def _grow(self, layer: int, needed: int) -> None:
        size = self.k[layer].shape[0]
        if needed <= size:
            return
        if needed > self.capacity:
            raise ContextOverflow(f"sequence needs {needed} positions, but {self.capacity} were reserved")
        new = min(max(needed, 2 * size), self.capacity)
        for store in (self.k, self.v):
            grown = torch.zeros(new, *store[layer].shape[1:], dtype=self.dtype, device=self.device)
            grown[:size] = store[layer]
            store[layer] = grown

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor):
        L = k.shape[0]
        ring = self.ring_pos[layer]
        if ring is not None and L == 1:
            # one token: its slot held position p - W, which its query can no longer see, so write
            # first and attend over the ring alone (no copy of the window)
            slot = int(positions[0]) % ring.shape[0]
            self.k[layer][slot], self.v[layer][slot], ring[slot] = k[0], v[0], positions[0]
            keys, values, k_pos = self.k[layer], self.v[layer], ring
        elif ring is not None:
            W = ring.shape[0]
            keys, values, k_pos = (
                torch.cat((self.k[layer], k)),
                torch.cat((self.v[layer], v)),
                torch.cat((ring, positions)),
            )
            keep = slice(max(0, L - W), L)  # only the newest W positions can be seen again
            slots = positions[keep] % W
            self.k[layer][slots] = k[keep]
            self.v[layer][slots] = v[keep]
            ring[slots] = positions[keep]
        else:
            start = int(positions[0])
            end = start + L
            self._grow(layer, end)
            self.k[layer][start:end] = k
            self.v[layer][start:end] = v
            keys, values = self.k[layer][:end], self.v[layer][:end]
            k_pos = torch.arange(end, device=k.device)
        if layer == self.config.num_hidden_layers - 1:
            self.length = int(positions[-1]) + 1
        return keys, values, k_pos

    def copy(self, capacity: int) -> SequenceKV:
        """An independent copy holding the same positions (for prefix reuse), with a new reservation."""
        other = SequenceKV.__new__(SequenceKV)
        other.config, other.capacity, other.dtype, other.device = self.config, capacity, self.dtype, self.device
        other.length = self.length
        other.k = [
            t[: max(self.length, 1)].clone() if r is None else t.clone()
            for t, r in zip(self.k, self.ring_pos, strict=True)
        ]
        other.v = [
            t[: max(self.length, 1)].clone() if r is None else t.clone()
            for t, r in zip(self.v, self.ring_pos, strict=True)
        ]
        other.ring_pos = [None if r is None else r.clone() for r in self.ring_pos]
        return other

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


@dataclass
class KVBudget:
    """Bytes of KV cache all sequences together may reserve."""

    config: ModelConfig
    limit_bytes: int
    dtype_bytes: int = 2
    reserved: int = 0

    @property
    def per_token(self) -> int:
        full = sum(not self.config.is_sliding(i) for i in range(self.config.num_hidden_layers))
        return full * 2 * self.config.num_key_value_heads * self.config.head_dim * self.dtype_bytes

    @property
    def per_sequence(self) -> int:
        sliding = sum(self.config.is_sliding(i) for i in range(self.config.num_hidden_layers))
        return (
            sliding
            * 2
            * self.config.sliding_window
            * self.config.num_key_value_heads
            * self.config.head_dim
            * self.dtype_bytes
        )

    def cost(self, tokens: int) -> int:
        return self.per_sequence + tokens * self.per_token

    def fits_ever(self, tokens: int) -> bool:
        return self.cost(tokens) <= self.limit_bytes

    def try_reserve(self, tokens: int) -> bool:
        cost = self.cost(tokens)
        if self.reserved + cost > self.limit_bytes:
            return False
        self.reserved += cost
        return True

    def release(self, tokens: int) -> None:
        self.reserved -= self.cost(tokens)
        assert self.reserved >= 0, "KV budget released more than was reserved"

    @property
    def usage(self) -> float:
        return self.reserved / self.limit_bytes if self.limit_bytes else 0.0
