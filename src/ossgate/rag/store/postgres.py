"""The scale-out store: PostgreSQL with pgvector (HNSW, cosine) and a generated tsvector for full text.

Same contract as the SQLite store. Notes on the choices:
- Embeddings live in an untyped `vector` column with their dimension beside them, and each dimension
  gets its own partial HNSW index on `embedding::vector(d)`: collections embedded by different
  models share one table, and a query uses the index of its dimension (pgvector's documented way).
- Filters and the tenant are in the WHERE clause of the index scan. With pgvector >= 0.8 iterative
  index scans (`hnsw.iterative_scan`) keep walking the graph until `k` rows pass the filter, instead
  of filtering the first `ef_search` candidates and coming back short.
- Full text is PostgreSQL's own (english config, ts_rank_cd), with each query term as a phrase.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from ossgate.errors import InvalidRequest, NotFound, OssgateError
from ossgate.rag.records import Chunk, ChunkRecord, DocumentRecord, Filters
from ossgate.rag.store.base import (
    ChunkStore,
    CollectionInfo,
    check_embeddings,
    check_metadata,
    check_name,
    embedder_mismatch,
    parse_filters,
    raw_query_terms,
)

log = logging.getLogger(__name__)

EF_SEARCH = 100  # HNSW candidate list at query time; recall@10 vs exact is measured in bench/rag.py

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS rag_collections (
    tenant text NOT NULL, name text NOT NULL, embedder text NOT NULL, dimension int NOT NULL,
    created_at double precision NOT NULL, PRIMARY KEY (tenant, name));
CREATE TABLE IF NOT EXISTS rag_documents (
    id bigserial PRIMARY KEY, tenant text NOT NULL, collection text NOT NULL, source text NOT NULL,
    title text NOT NULL, content_hash text NOT NULL, fingerprint text NOT NULL, metadata jsonb NOT NULL,
    ingested_at double precision NOT NULL, n_chunks int NOT NULL, UNIQUE (tenant, collection, source),
    FOREIGN KEY (tenant, collection) REFERENCES rag_collections (tenant, name) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS rag_chunks (
    id bigserial PRIMARY KEY, document_id bigint NOT NULL REFERENCES rag_documents (id) ON DELETE CASCADE,
    tenant text NOT NULL, collection text NOT NULL, ordinal int NOT NULL, text text NOT NULL,
    heading text NOT NULL, page int, char_start int NOT NULL, char_end int NOT NULL, n_tokens int NOT NULL,
    dimension int NOT NULL, embedding vector NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', heading || ' ' || text)) STORED);
CREATE INDEX IF NOT EXISTS rag_chunks_by_collection ON rag_chunks (tenant, collection);
CREATE INDEX IF NOT EXISTS rag_chunks_by_document ON rag_chunks (document_id);
CREATE INDEX IF NOT EXISTS rag_chunks_tsv ON rag_chunks USING gin (tsv);
"""


class StoreUnavailable(OssgateError):
    status = 503
    type = "server_error"


def vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.8g}" for x in np.asarray(v, dtype=np.float32).reshape(-1)) + "]"


def _filter_sql(filters: Filters | None) -> tuple[str, list]:
    sql, params = [], []
    for clause in parse_filters(filters):
        if clause.is_column:
            table = "c" if clause.key == "page" else "d"
            sql.append(f" AND {table}.{clause.key} = ANY(%s)")  # key is one of COLUMN_FILTERS
            params.append(clause.values)
        else:
            # typed jsonb containment: {"k": 3} matches 3, not "3", as json_extract does in SQLite
            sql.append(" AND (" + " OR ".join(["d.metadata @> %s::jsonb"] * len(clause.values)) + ")")
            params.extend(json.dumps({clause.key: v}) for v in clause.values)
    return "".join(sql), params


class PostgresStore(ChunkStore):
    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._psycopg = psycopg
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"cannot connect to the PostgreSQL store: {e}".strip()) from e
        self._lock = threading.RLock()
        self._indexed_dims: set[int] = set()
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('ossgate.rag.schema'))")  # concurrent first starts
            try:
                cur.execute(SCHEMA)
            except psycopg.errors.FeatureNotSupported as e:
                raise StoreUnavailable(f"the pgvector extension is not installed in this PostgreSQL: {e}") from e

    @contextmanager
    def _tx(self) -> Iterator:
        with self._lock, self._db.transaction(), self._db.cursor() as cur:
            yield cur

    def _ensure_index(self, cur, dimension: int) -> None:
        if dimension in self._indexed_dims:
            return
        if not 0 < dimension <= 2000:
            raise InvalidRequest(f"pgvector's HNSW index takes at most 2000 dimensions, got {dimension}")
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('ossgate.rag.schema'))")
        cur.execute(
            f"CREATE INDEX IF NOT EXISTS rag_chunks_hnsw_{dimension} ON rag_chunks "
            f"USING hnsw ((embedding::vector({dimension})) vector_cosine_ops) WHERE dimension = {dimension}"
        )
        self._indexed_dims.add(dimension)

    # -- collections ---------------------------------------------------------------------------

    def ensure_collection(self, tenant: str, collection: str, *, embedder: str, dimension: int) -> CollectionInfo:
        check_name("tenant", tenant)
        check_name("collection", collection)
        with self._tx() as cur:
            self._ensure_index(cur, dimension)
            cur.execute(
                "INSERT INTO rag_collections (tenant, name, embedder, dimension, created_at) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, name) DO NOTHING",
                (tenant, collection, embedder, dimension, time.time()),
            )
            cur.execute(
                "SELECT embedder, dimension FROM rag_collections WHERE tenant = %s AND name = %s", (tenant, collection)
            )
            row = cur.fetchone()
        if tuple(row) != (embedder, dimension):
            raise embedder_mismatch(collection, tuple(row), embedder, dimension)
        return self.collection(tenant, collection)

    def _info_rows(self, tenant: str, name: str | None) -> list[CollectionInfo]:
        sql = (
            "SELECT c.tenant, c.name, c.embedder, c.dimension, "
            "(SELECT count(*) FROM rag_documents d WHERE d.tenant = c.tenant AND d.collection = c.name), "
            "(SELECT count(*) FROM rag_chunks k WHERE k.tenant = c.tenant AND k.collection = c.name) "
            "FROM rag_collections c WHERE c.tenant = %s"
        )
        params: list = [tenant]
        if name is not None:
            sql, params = sql + " AND c.name = %s", params + [name]
        with self._tx() as cur:
            cur.execute(sql + " ORDER BY c.name", params)
            return [CollectionInfo(*row) for row in cur.fetchall()]

    def collection(self, tenant: str, collection: str) -> CollectionInfo | None:
        rows = self._info_rows(tenant, collection)
        return rows[0] if rows else None

    def list_collections(self, tenant: str) -> list[CollectionInfo]:
        return self._info_rows(tenant, None)

    def delete_collection(self, tenant: str, collection: str) -> bool:
        with self._tx() as cur:
            cur.execute("DELETE FROM rag_collections WHERE tenant = %s AND name = %s", (tenant, collection))
            return cur.rowcount > 0  # documents and chunks go by ON DELETE CASCADE

    # -- documents -----------------------------------------------------------------------------

    _DOC_COLUMNS = "id, source, title, content_hash, fingerprint, metadata, ingested_at, n_chunks"

    @staticmethod
    def _document(row: tuple) -> DocumentRecord:
        id_, source, title, content_hash, fingerprint, metadata, ingested_at, n_chunks = row
        return DocumentRecord(source, title, content_hash, fingerprint, dict(metadata), ingested_at, n_chunks, id_)

    def get_document(self, tenant: str, collection: str, source: str) -> DocumentRecord | None:
        with self._tx() as cur:
            cur.execute(
                f"SELECT {self._DOC_COLUMNS} FROM rag_documents WHERE tenant = %s AND collection = %s AND source = %s",
                (tenant, collection, source),
            )
            row = cur.fetchone()
        return self._document(row) if row else None

    def list_documents(self, tenant: str, collection: str) -> list[DocumentRecord]:
        with self._tx() as cur:
            cur.execute(
                f"SELECT {self._DOC_COLUMNS} FROM rag_documents WHERE tenant = %s AND collection = %s ORDER BY source",
                (tenant, collection),
            )
            return [self._document(r) for r in cur.fetchall()]

    def replace_document(
        self,
        tenant: str,
        collection: str,
        document: DocumentRecord,
        chunks: Sequence[ChunkRecord],
        embeddings: np.ndarray,
    ) -> int:
        metadata = check_metadata(document.metadata)
        with self._tx() as cur:
            # FOR UPDATE: two ingests of the same collection serialise instead of racing on the same source
            cur.execute(
                "SELECT dimension FROM rag_collections WHERE tenant = %s AND name = %s FOR UPDATE", (tenant, collection)
            )
            row = cur.fetchone()
            if row is None:
                raise NotFound(f"collection {collection!r} does not exist", param="collection")
            dimension = row[0]
            embeddings = check_embeddings(chunks, embeddings, dimension)
            cur.execute(
                "DELETE FROM rag_documents WHERE tenant = %s AND collection = %s AND source = %s",
                (tenant, collection, document.source),
            )
            cur.execute(
                "INSERT INTO rag_documents (tenant, collection, source, title, content_hash, fingerprint, metadata, "
                "ingested_at, n_chunks) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) RETURNING id",
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
            )
            doc_id = cur.fetchone()[0]
            with cur.copy(
                "COPY rag_chunks (document_id, tenant, collection, ordinal, text, heading, page, char_start, char_end, "
                "n_tokens, dimension, embedding) FROM STDIN"
            ) as copy:
                for i, c in enumerate(chunks):
                    copy.write_row(
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
                            dimension,
                            vector_literal(embeddings[i]),
                        )
                    )
        return int(doc_id)

    def delete_document(self, tenant: str, collection: str, source: str) -> bool:
        with self._tx() as cur:
            cur.execute(
                "DELETE FROM rag_documents WHERE tenant = %s AND collection = %s AND source = %s",
                (tenant, collection, source),
            )
            return cur.rowcount > 0

    # -- search --------------------------------------------------------------------------------

    def text_search(
        self, tenant: str, collection: str, query: str, k: int, filters: Filters | None = None
    ) -> list[tuple[int, float]]:
        # each term a phrase parsed by PostgreSQL's own parser, as typed: its parser reads `XK-2231` as
        # 'xk' then '-2231' in documents, so the query must reach it unsplit. phraseto_tsquery treats its
        # input as plain text (no operators), so nothing in the query acts as search syntax.
        terms = raw_query_terms(query)
        if not terms or k <= 0:
            return []
        tsquery = " || ".join(["phraseto_tsquery('english', %s)"] * len(terms))
        where, params = _filter_sql(filters)
        with self._tx() as cur:
            cur.execute(
                f"WITH q AS (SELECT ({tsquery}) AS q) "
                "SELECT c.id, ts_rank_cd(c.tsv, q.q) AS score "
                "FROM q, rag_chunks c JOIN rag_documents d ON d.id = c.document_id "
                f"WHERE c.tsv @@ q.q AND c.tenant = %s AND c.collection = %s{where} ORDER BY score DESC, c.id LIMIT %s",
                [*terms, tenant, collection, *params, k],
            )
            return [(int(i), float(s)) for i, s in cur.fetchall()]

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
        info = self.collection(tenant, collection)
        if info is None or k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != info.dimension:
            raise InvalidRequest(f"query vector has {query.shape[0]} dims, the collection {info.dimension}")
        d = int(info.dimension)
        # the cast expression must match the partial index's for the planner to use HNSW; exact search
        # orders by the uncast column, which no index covers, so PostgreSQL scans every candidate row
        distance = f"(c.embedding::vector({d})) <=> %s::vector({d})" if not exact else "c.embedding <=> %s::vector"
        where, params = _filter_sql(filters)
        with self._tx() as cur:
            if not exact:
                cur.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, k)}")
                cur.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            cur.execute(
                f"SELECT c.id, 1 - ({distance}) AS score "
                "FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id "
                f"WHERE c.dimension = {d} AND c.tenant = %s AND c.collection = %s{where} ORDER BY {distance} LIMIT %s",
                [vector_literal(query), tenant, collection, *params, vector_literal(query), k],
            )
            return [(int(i), float(s)) for i, s in cur.fetchall()]

    def get_chunks(self, tenant: str, collection: str, ids: Sequence[int]) -> dict[int, Chunk]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        with self._tx() as cur:
            cur.execute(
                "SELECT c.id, c.document_id, c.collection, d.source, d.title, c.heading, c.page, c.text, c.char_start, "
                "c.char_end, d.content_hash, d.ingested_at, d.metadata FROM rag_chunks c "
                "JOIN rag_documents d ON d.id = c.document_id "
                "WHERE c.tenant = %s AND c.collection = %s AND c.id = ANY(%s)",
                (tenant, collection, ids),
            )
            return {r[0]: Chunk(*r[:12], metadata=dict(r[12])) for r in cur.fetchall()}

    def close(self) -> None:
        with self._lock:
            self._db.close()
