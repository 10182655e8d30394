"""The records the RAG layer passes around: parsed blocks, chunks as stored, and search hits.

Plain dataclasses with no behaviour, shared by the parsers, the chunker, both stores and the retriever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A metadata value a user may attach to a document and filter on (JSON scalars only: they compare
# the same way in SQLite's json_extract and PostgreSQL's jsonb).
MetaValue = str | int | float | bool
# Filters: {key: value} for equality, {key: [v1, v2]} for "any of". Keys are "source", "title",
# "page" or a user metadata key. Applied inside the store query, before top-k.
Filters = dict[str, MetaValue | list[MetaValue]]


@dataclass
class Block:
    """One paragraph-like unit of a parsed document, with where it sits."""

    text: str
    headings: tuple[str, ...] = ()  # the heading path above this block, outermost first
    page: int | None = None  # 1-based page number, for formats that have pages (PDF)
    char_start: int = 0  # offset of `text` in ParsedDocument.text
    record: bool = False  # a CSV row / JSON record: always its own chunk


@dataclass
class ParsedDocument:
    """A document as the parser understood it: its title and its blocks in reading order."""

    title: str
    blocks: list[Block]
    text: str = ""  # the blocks joined by blank lines; char offsets point into this


@dataclass
class ChunkRecord:
    """A chunk ready to be stored (its embedding travels separately, as a row of a matrix)."""

    ordinal: int  # position in its document
    text: str
    heading: str  # " > "-joined heading path
    page: int | None
    char_start: int
    char_end: int
    n_tokens: int


@dataclass
class DocumentRecord:
    """One ingested source file of a collection."""

    source: str  # the file's resolved path: the identity used for incremental re-ingest and prune
    title: str
    content_hash: str  # sha256 of the file's bytes
    fingerprint: str  # hash of content + metadata + chunking + embedder: re-ingest when it changes
    metadata: dict[str, MetaValue] = field(default_factory=dict)
    ingested_at: float = 0.0  # unix time
    n_chunks: int = 0
    id: int | None = None


@dataclass
class Chunk:
    """A stored chunk as retrieval returns it."""

    id: int
    document_id: int
    collection: str
    source: str
    title: str
    heading: str
    page: int | None
    text: str
    char_start: int
    char_end: int
    content_hash: str
    ingested_at: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoredChunk:
    """A retrieval hit: the chunk, its final score, and how each ranker placed it (1-based, None = absent)."""

    chunk: Chunk
    score: float
    text_rank: int | None = None
    vector_rank: int | None = None
    rerank_score: float | None = None
