"""Chunk stores, chosen by URL: `sqlite:///PATH` (embedded, default) or `postgresql://...` (pgvector)."""

from __future__ import annotations

from ossgate.errors import InvalidRequest
from ossgate.rag.store.base import ChunkStore, CollectionInfo


def open_store(url: str) -> ChunkStore:
    """Open (creating the schema if needed) the store that `url` names."""
    if url.startswith("sqlite:///"):
        from ossgate.rag.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///") or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from ossgate.rag.store.postgres import PostgresStore

        return PostgresStore(url)
    raise InvalidRequest(f"unknown store URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


__all__ = ["ChunkStore", "CollectionInfo", "open_store"]
