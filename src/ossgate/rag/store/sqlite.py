"""The embedded store: one SQLite file (WAL) with FTS5 for BM25 and exact vector search in numpy.

Why this design (measured in bench/rag.py, see bench/results/rag.md): at the sizes one machine
ingests (up to a few hundred thousand chunks per collection), a brute-force matrix product over
normalised float32 rows takes milliseconds, has recall 1.0 by construction, and makes metadata
filters exact: the filter is an SQL query choosing the rows, the product runs over those rows only.
Everything (documents, chunks, FTS index, vectors) lives in one SQLite database, so one transaction
per document makes ingest crash-safe with no second system to keep in step. sqlite-vec would need
an SQLite build that loads extensions (this Python's does not) and also scans exhaustively; LanceDB
has no transaction spanning its table and a separate metadata store, and brings ~100 MB of deps.

Vectors are cached in memory per collection and reloaded when the collection's `generation` (bumped
by every write, in the same transaction) changes, so another process's ingest is seen at once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ossgate.errors import InvalidRequest, NotFound
from ossgate.rag.records import Chunk, ChunkRecord, DocumentRecord, Filters
from ossgate.rag.store.base import (
    ChunkStore,
    CollectionInfo,
    check_embeddings,
    check_metadata,
    check_name,
    embedder_mismatch,
    parse_filters,
    query_terms,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    tenant TEXT NOT NULL, name TEXT NOT NULL, embedder TEXT NOT NULL, dimension INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, PRIMARY KEY (tenant, name));
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, collection TEXT NOT NULL, source TEXT NOT NULL,
    title TEXT NOT NULL, content_hash TEXT NOT NULL, fingerprint TEXT NOT NULL, metadata TEXT NOT NULL,
    ingested_at REAL NOT NULL, n_chunks INTEGER NOT NULL, UNIQUE (tenant, collection, source),
    FOREIGN KEY (tenant, collection) REFERENCES collections (tenant, name) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    tenant TEXT NOT NULL, collection TEXT NOT NULL, ordinal INTEGER NOT NULL, text TEXT NOT NULL,
    heading TEXT NOT NULL, page INTEGER, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL, embedding BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_collection ON chunks (tenant, collection, id);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (
    heading, text, content = 'chunks', content_rowid = 'id', tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, heading, text) VALUES (new.id, new.heading, new.text); END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, heading, text) VALUES ('delete', old.id, old.heading, old.text); END;
"""


@dataclass
class _Vectors:
    generation: int
    ids: np.ndarray  # (n,) int64, ascending
    matrix: np.ndarray  # (n, dimension) float32, unit rows


def _filter_sql(filters: Filters | None) -> tuple[str, list]:
    """` AND ...` over chunks `c` joined with documents `d`; values are always bound parameters."""
    sql, params = [], []
    for clause in parse_filters(filters):
        marks = ", ".join("?" * len(clause.values))
        if clause.is_column:
            table = "c" if clause.key == "page" else "d"
            sql.append(f" AND {table}.{clause.key} IN ({marks})")  # key is one of COLUMN_FILTERS
        else:
            sql.append(f" AND json_extract(d.metadata, ?) IN ({marks})")
            params.append(f'$."{clause.key}"')
        params.extend(clause.values)
    return "".join(sql), params


class SQLiteStore(ChunkStore):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are ours (BEGIN IMMEDIATE / COMMIT), not the sqlite3 module's guesses
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable up to the last checkpointed commit
        self._db.execute("PRAGMA foreign_keys = ON")
        self._lock = threading.RLock()
        self._vectors: dict[tuple[str, str], _Vectors] = {}
        with self._write():
            for statement in SCHEMA.split(";\n"):
                if statement.strip():
                    self._db.execute(statement)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot for all statements inside
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # -- collections ---------------------------------------------------------------------------

    def ensure_collection(self, tenant: str, collection: str, *, embedder: str, dimension: int) -> CollectionInfo:
        check_name("tenant", tenant)
        check_name("collection", collection)
        with self._write() as db:
            row = db.execute(
                "SELECT embedder, dimension FROM collections WHERE tenant = ? AND name = ?", (tenant, collection)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO collections (tenant, name, embedder, dimension, created_at) VALUES (?, ?, ?, ?, ?)",
                    (tenant, collection, embedder, dimension, time.time()),
                )
            elif tuple(row) != (embedder, dimension):
                raise embedder_mismatch(collection, tuple(row), embedder, dimension)
        return self.collection(tenant, collection)

    def _info_rows(self, tenant: str, name: str | None) -> list[CollectionInfo]:
        sql = (
            "SELECT c.tenant, c.name, c.embedder, c.dimension, "
            "(SELECT count(*) FROM documents d WHERE d.tenant = c.tenant AND d.collection = c.name), "
            "(SELECT count(*) FROM chunks k WHERE k.tenant = c.tenant AND k.collection = c.name) "
            "FROM collections c WHERE c.tenant = ?"
        )
        params: list = [tenant]
        if name is not None:
            sql, params = sql + " AND c.name = ?", params + [name]
        with self._read() as db:
            return [CollectionInfo(*row) for row in db.execute(sql + " ORDER BY c.name", params)]

    def collection(self, tenant: str, collection: str) -> CollectionInfo | None:
        rows = self._info_rows(tenant, collection)
        return rows[0] if rows else None

    def list_collections(self, tenant: str) -> list[CollectionInfo]:
        return self._info_rows(tenant, None)

    def delete_collection(self, tenant: str, collection: str) -> bool:
        with self._write() as db:
            db.execute("DELETE FROM chunks WHERE tenant = ? AND collection = ?", (tenant, collection))
            db.execute("DELETE FROM documents WHERE tenant = ? AND collection = ?", (tenant, collection))
            gone = db.execute("DELETE FROM collections WHERE tenant = ? AND name = ?", (tenant, collection)).rowcount
        self._vectors.pop((tenant, collection), None)
        return gone > 0

    # -- documents -----------------------------------------------------------------------------

    _DOC_COLUMNS = "id, source, title, content_hash, fingerprint, metadata, ingested_at, n_chunks"

    @staticmethod
    def _document(row: tuple) -> DocumentRecord:
        id_, source, title, content_hash, fingerprint, metadata, ingested_at, n_chunks = row
        return DocumentRecord(
            source, title, content_hash, fingerprint, json.loads(metadata), ingested_at, n_chunks, id_
        )

    def get_document(self, tenant: str, collection: str, source: str) -> DocumentRecord | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {self._DOC_COLUMNS} FROM documents WHERE tenant = ? AND collection = ? AND source = ?",
                (tenant, collection, source),
            ).fetchone()
        return self._document(row) if row else None

    def list_documents(self, tenant: str, collection: str) -> list[DocumentRecord]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._DOC_COLUMNS} FROM documents WHERE tenant = ? AND collection = ? ORDER BY source",
                (tenant, collection),
            ).fetchall()
        return [self._document(r) for r in rows]

    def _bump(self, db: sqlite3.Connection, tenant: str, collection: str) -> None:
        db.execute(
            "UPDATE collections SET generation = generation + 1 WHERE tenant = ? AND name = ?", (tenant, collection)
        )

    def replace_document(
        self,
        tenant: str,
        collection: str,
        document: DocumentRecord,
        chunks: Sequence[ChunkRecord],
        embeddings: np.ndarray,
    ) -> int:
        metadata = check_metadata(document.metadata)
        with self._write() as db:
            row = db.execute(
                "SELECT dimension FROM collections WHERE tenant = ? AND name = ?", (tenant, collection)
            ).fetchone()
            if row is None:
                raise NotFound(f"collection {collection!r} does not exist", param="collection")
            embeddings = check_embeddings(chunks, embeddings, row[0])
            db.execute(
                "DELETE FROM chunks WHERE document_id IN "
                "(SELECT id FROM documents WHERE tenant = ? AND collection = ? AND source = ?)",
                (tenant, collection, document.source),
            )
            db.execute(
                "DELETE FROM documents WHERE tenant = ? AND collection = ? AND source = ?",
                (tenant, collection, document.source),
            )
            doc_id = db.execute(
                "INSERT INTO documents (tenant, collection, source, title, content_hash, fingerprint, metadata, "
                "ingested_at, n_chunks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    collection,
                    document.source,
                    document.title,
                    document.content_hash,
                    document.fingerprint,
                    json.dumps(metadata, sort_keys=True),
                    document.ingested_at or time.time(),
                    len(chunks),
                ),
            ).lastrowid
            db.executemany(
                "INSERT INTO chunks (document_id, tenant, collection, ordinal, text, heading, page, char_start, "
                "char_end, n_tokens, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        doc_id,
                        tenant,
                        collection,
                        c.ordinal,
                        c.text,
                        c.heading,
                        c.page,
                        c.char_start,
                        c.char_end,
                        c.n_tokens,
                        embeddings[i].tobytes(),
                    )
                    for i, c in enumerate(chunks)
                ],
            )
            self._bump(db, tenant, collection)
        return int(doc_id)

    def delete_document(self, tenant: str, collection: str, source: str) -> bool:
        with self._write() as db:
            db.execute(
                "DELETE FROM chunks WHERE document_id IN "
                "(SELECT id FROM documents WHERE tenant = ? AND collection = ? AND source = ?)",
                (tenant, collection, source),
            )
            gone = db.execute(
                "DELETE FROM documents WHERE tenant = ? AND collection = ? AND source = ?", (tenant, collection, source)
            ).rowcount
            self._bump(db, tenant, collection)
        return gone > 0

    # -- search --------------------------------------------------------------------------------

    def text_search(
        self, tenant: str, collection: str, query: str, k: int, filters: Filters | None = None
    ) -> list[tuple[int, float]]:
        terms = query_terms(query)
        if not terms or k <= 0:
            return []
        match = " OR ".join('"' + " ".join(t) + '"' for t in terms)  # tokens are [^\W_]+: no quotes inside
        where, params = _filter_sql(filters)
        with self._read() as db:
            rows = db.execute(
                "SELECT c.id, -bm25(chunks_fts) AS score FROM chunks_fts "
                "JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id "
                f"WHERE chunks_fts MATCH ? AND c.tenant = ? AND c.collection = ?{where} "
                "ORDER BY bm25(chunks_fts) LIMIT ?",
                [match, tenant, collection, *params, k],
            ).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def _load_vectors(self, db: sqlite3.Connection, tenant: str, collection: str) -> _Vectors | None:
        row = db.execute(
            "SELECT generation, dimension FROM collections WHERE tenant = ? AND name = ?", (tenant, collection)
        ).fetchone()
        if row is None:
            return None
        generation, dimension = row
        cached = self._vectors.get((tenant, collection))
        if cached is not None and cached.generation == generation:
            return cached
        rows = db.execute(
            "SELECT id, embedding FROM chunks WHERE tenant = ? AND collection = ? ORDER BY id", (tenant, collection)
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
        loaded = _Vectors(generation, ids, matrix)
        self._vectors[(tenant, collection)] = loaded
        log.debug("loaded %d vectors of %s/%s (generation %d)", len(ids), tenant, collection, generation)
        return loaded

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
        # always exact here: `exact` exists for the PostgreSQL store's approximate index
        where, params = _filter_sql(filters)
        with self._read() as db:
            vectors = self._load_vectors(db, tenant, collection)
            if vectors is None or len(vectors.ids) == 0 or k <= 0:
                return []
            if where:
                allowed = np.fromiter(
                    (
                        r[0]
                        for r in db.execute(
                            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                            f"WHERE c.tenant = ? AND c.collection = ?{where}",
                            [tenant, collection, *params],
                        )
                    ),
                    dtype=np.int64,
                )
                rows = np.searchsorted(vectors.ids, allowed)
            else:
                rows = None
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != vectors.matrix.shape[1]:
            raise InvalidRequest(f"query vector has {query.shape[0]} dims, the collection {vectors.matrix.shape[1]}")
        ids, matrix = (vectors.ids, vectors.matrix) if rows is None else (vectors.ids[rows], vectors.matrix[rows])
        if len(ids) == 0:
            return []
        scores = matrix @ query  # (n,) cosine similarities: rows and query are unit length
        k = min(k, len(ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def get_chunks(self, tenant: str, collection: str, ids: Sequence[int]) -> dict[int, Chunk]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        with self._read() as db:
            rows = db.execute(
                "SELECT c.id, c.document_id, c.collection, d.source, d.title, c.heading, c.page, c.text, c.char_start, "
                "c.char_end, d.content_hash, d.ingested_at, d.metadata "
                "FROM chunks c JOIN documents d ON d.id = c.document_id "
                f"WHERE c.tenant = ? AND c.collection = ? AND c.id IN ({marks})",
                [tenant, collection, *ids],
            ).fetchall()
        return {r[0]: Chunk(*r[:12], metadata=json.loads(r[12])) for r in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
