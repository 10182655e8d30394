"""The one interface both chunk stores implement, and the query pieces they share.

Tenancy is part of every method's signature, not an afterthought: each store puts `tenant = ?` into
every SQL statement it runs, so a caller holding one tenant's key cannot name, list, read or search
another tenant's collections, whatever collection name, filter or chunk id it passes.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ossgate.errors import InvalidRequest
from ossgate.rag.records import Chunk, ChunkRecord, DocumentRecord, Filters, MetaValue

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_META_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
_QUERY_TOKEN = re.compile(r"[^\W_]+")
COLUMN_FILTERS = ("source", "title", "page")  # filterable fields that are columns; any other key is user metadata
MAX_QUERY_TERMS = 64
# English function words dropped from full-text queries, as PostgreSQL's english config does, so
# BM25 in SQLite does not rank a passage first for sharing "of" or "the" with the question
_STOPWORD_TEXT = (
    "a an and are as at be but by can could do does did for from had has have how i if in into is it its "
    "me my no not of on or our should so than that the their them then there these they this to was we "
    "were what when where which who why will with would you your"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass
class CollectionInfo:
    tenant: str
    name: str
    embedder: str  # the model that embedded it: queries must use the same one
    dimension: int
    documents: int = 0
    chunks: int = 0


@dataclass
class FilterClause:
    """One validated filter: the field (a column or a metadata key) and the values any of which may match."""

    key: str
    values: list[MetaValue]
    is_column: bool


def check_name(kind: str, value: str) -> str:
    """Tenant and collection names: letters, digits, `_.-`, at most 128, starting with a letter or digit."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidRequest(
            f"{kind} name {value!r} is not valid: use letters, digits, '_', '.', '-' "
            "(at most 128, not starting with a symbol)",
            param=kind,
        )
    return value


def check_metadata(metadata: dict) -> dict[str, MetaValue]:
    for key, value in metadata.items():
        if not isinstance(key, str) or not _META_KEY.match(key):
            raise InvalidRequest(
                f"metadata key {key!r} is not valid: use letters, digits, '_', '.', '-'", param="metadata"
            )
        if key in COLUMN_FILTERS:
            raise InvalidRequest(f"metadata key {key!r} is reserved (it is a chunk field)", param="metadata")
        if not isinstance(value, str | int | float | bool) or value is None:
            raise InvalidRequest(f"metadata value for {key!r} must be a string, number or boolean", param="metadata")
    return dict(metadata)


def parse_filters(filters: Filters | None) -> list[FilterClause]:
    """Validate `{key: value | [values]}` filters; all clauses must hold (AND), values within one are OR."""
    clauses = []
    for key, value in (filters or {}).items():
        values = value if isinstance(value, list) else [value]
        if not values:
            raise InvalidRequest(f"filter {key!r} has an empty list of values", param="filters")
        if key not in COLUMN_FILTERS and (not isinstance(key, str) or not _META_KEY.match(key)):
            raise InvalidRequest(
                f"filter key {key!r} is not valid: use letters, digits, '_', '.', '-'", param="filters"
            )
        for v in values:
            if not isinstance(v, str | int | float | bool) or v is None:
                raise InvalidRequest(f"filter value for {key!r} must be a string, number or boolean", param="filters")
        if key == "page" and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise InvalidRequest("filter 'page' takes integers", param="filters")
        clauses.append(FilterClause(key, list(values), key in COLUMN_FILTERS))
    return clauses


def query_terms(query: str) -> list[list[str]]:
    """A query's whitespace-separated terms, each as its word tokens: `XK-2231 torque` -> [[xk, 2231], [torque]].

    Each term becomes a phrase (so a part number matches as a whole) and the phrases are OR-ed, the way
    BM25 engines treat a free-text query. Only word characters survive: no search syntax gets through.
    """
    terms = []
    for raw in query.split():
        tokens = [t.lower() for t in _QUERY_TOKEN.findall(raw)]
        if tokens:
            terms.append(tokens)
    content = [t for t in terms if len(t) > 1 or t[0] not in STOPWORDS]
    return (content or terms)[:MAX_QUERY_TERMS]


def raw_query_terms(query: str) -> list[str]:
    """The whitespace-separated terms that contain a word, as typed (for a store whose own parser
    tokenises them exactly as it tokenised the documents)."""
    return [raw for raw in query.split() if _QUERY_TOKEN.search(raw)][:MAX_QUERY_TERMS]


def embedder_mismatch(collection: str, stored: tuple, embedder: str, dimension: int) -> InvalidRequest:
    """A collection's vectors only compare with vectors from the embedder that made them."""
    return InvalidRequest(
        f"collection {collection!r} was embedded with {stored[0]} ({stored[1]} dims), "
        f"not {embedder} ({dimension} dims); configure that embedder or ingest into a new collection",
        param="collection",
    )


class ChunkStore(ABC):
    """Documents, their chunks, a full-text index and a vector index, per tenant and collection.

    `replace_document` and `delete_document` are atomic: after a crash either the whole old or the
    whole new document is there, never a part. Searches return `(chunk_id, score)`, best first, with
    the filters applied inside the search, so top-k counts only chunks that pass them.
    """

    url: str

    @abstractmethod
    def ensure_collection(self, tenant: str, collection: str, *, embedder: str, dimension: int) -> CollectionInfo:
        """Create the collection if needed; refuse if it exists with another embedder."""

    @abstractmethod
    def collection(self, tenant: str, collection: str) -> CollectionInfo | None: ...

    @abstractmethod
    def list_collections(self, tenant: str) -> list[CollectionInfo]: ...

    @abstractmethod
    def delete_collection(self, tenant: str, collection: str) -> bool: ...

    @abstractmethod
    def get_document(self, tenant: str, collection: str, source: str) -> DocumentRecord | None: ...

    @abstractmethod
    def list_documents(self, tenant: str, collection: str) -> list[DocumentRecord]: ...

    @abstractmethod
    def replace_document(
        self,
        tenant: str,
        collection: str,
        document: DocumentRecord,
        chunks: Sequence[ChunkRecord],
        embeddings: np.ndarray,
    ) -> int:
        """Store a document and its chunks in one transaction, replacing any document of the same source."""

    @abstractmethod
    def delete_document(self, tenant: str, collection: str, source: str) -> bool: ...

    @abstractmethod
    def text_search(
        self, tenant: str, collection: str, query: str, k: int, filters: Filters | None = None
    ) -> list[tuple[int, float]]:
        """Full-text search (BM25 in SQLite, ts_rank_cd in PostgreSQL); higher score = better."""

    @abstractmethod
    def vector_search(
        self,
        tenant: str,
        collection: str,
        vector: np.ndarray,
        k: int,
        filters: Filters | None = None,
        *,
        exact: bool = False,
    ) -> list[tuple[int, float]]:
        """Nearest chunks by cosine similarity (the score). `exact` forces an exhaustive scan."""

    @abstractmethod
    def get_chunks(self, tenant: str, collection: str, ids: Sequence[int]) -> dict[int, Chunk]:
        """The chunks with these ids that belong to this tenant's collection (others are silently absent)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_embeddings(chunks: Sequence[ChunkRecord], embeddings: np.ndarray, dimension: int) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape != (len(chunks), dimension):
        raise InvalidRequest(f"expected embeddings of shape ({len(chunks)}, {dimension}), got {embeddings.shape}")
    return embeddings
