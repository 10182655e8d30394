"""Prefix reuse: KV snapshots of prompt prefixes, so a request that starts with a cached prefix (the same
system + developer message, as in RAG and agents, or the previous turn of a chat) skips recomputing it.

Snapshots are copies taken at chosen boundaries (the end of the harmony developer/system message and the
end of each prompt); a request that matches starts from a copy of the longest matching snapshot.
"""

from __future__ import annotations

from collections import OrderedDict

from ossgate.engine.kv_cache import SequenceKV


class PrefixCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], SequenceKV] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.hit_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def store(self, tokens: list[int], cache: SequenceKV) -> None:
        key = tuple(tokens)
        if key in self._entries or self.max_bytes <= 0:
            return
        size = cache.nbytes()
        if size > self.max_bytes:
            return
        while self._bytes + size > self.max_bytes:
            _, old = self._entries.popitem(last=False)  # least recently used first
            self._bytes -= old.nbytes()
        self._entries[key] = cache
        self._bytes += size

    def lookup(self, prompt: list[int]) -> tuple[int, SequenceKV | None]:
        """Longest stored prefix of `prompt` that leaves at least one token to compute (its logits are needed)."""
        best: tuple[int, ...] | None = None
        for key in self._entries:
            n = len(key)
            if n < len(prompt) and (best is None or n > len(best)) and tuple(prompt[:n]) == key:
                best = key
        if best is None:
            return 0, None
        self._entries.move_to_end(best)
        self.hits += 1
        self.hit_tokens += len(best)
        return len(best), self._entries[best]

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
