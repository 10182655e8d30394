"""TraceStore: traces and scores in SQLite (embedded, WAL) or PostgreSQL, one schema and one code path.

The URL picks the driver (`sqlite:///path` → sqlite3, `postgresql://…` → psycopg 3); everything else is
the same SQL. The DDL uses type names both engines understand (SQLite maps BIGINT/DOUBLE PRECISION to its
INTEGER/REAL affinities), timestamps are integer milliseconds so time buckets are integer division in both,
and latency percentiles come from stored log-scale bucket numbers (GROUP BY) because the two engines do not
share a percentile function. Queries are written with `?` placeholders and rewritten to `%s` for psycopg.

Spans are stored as a JSON array on the trace row: a trace is written and read whole, and one row per
trace keeps the write rate high (see bench/results/observe.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ossgate.errors import InvalidRequest, NotFound, OssgateError
from ossgate.observe.trace import bucket_value_s

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

TRACE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trace_id", "TEXT PRIMARY KEY"),
    ("root_span_id", "TEXT"),
    ("started_ms", "BIGINT NOT NULL"),
    ("ended_ms", "BIGINT NOT NULL"),
    ("tenant_id", "TEXT"),
    ("key_id", "TEXT"),
    ("user_id", "TEXT"),
    ("session_id", "TEXT"),
    ("endpoint", "TEXT"),
    ("model", "TEXT"),
    ("backend", "TEXT"),
    ("fallback", "INTEGER NOT NULL DEFAULT 0"),
    ("fallback_from", "TEXT"),
    ("stream", "INTEGER NOT NULL DEFAULT 0"),
    ("status", "TEXT NOT NULL"),
    ("http_status", "INTEGER"),
    ("error_type", "TEXT"),
    ("error_message", "TEXT"),
    ("finish_reason", "TEXT"),
    ("input_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("output_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("reasoning_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("cached_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("ttft_s", "DOUBLE PRECISION"),
    ("tpot_s", "DOUBLE PRECISION"),
    ("latency_s", "DOUBLE PRECISION NOT NULL"),
    ("latency_bucket", "INTEGER"),
    ("ttft_bucket", "INTEGER"),
    ("cost_tokens_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("cost_hardware_usd", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("capture", "TEXT"),
    ("preview", "TEXT"),
    ("prompt", "TEXT"),
    ("response", "TEXT"),
    ("reasoning", "TEXT"),
    ("attrs", "TEXT"),
    ("spans", "TEXT"),
)
COLUMN_NAMES = tuple(name for name, _ in TRACE_COLUMNS)
# What a trace list shows: everything but the (large) content and spans.
SUMMARY_COLUMNS = tuple(c for c in COLUMN_NAMES if c not in ("prompt", "response", "reasoning", "spans", "attrs"))

DDL = [
    "CREATE TABLE IF NOT EXISTS observe_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS traces (" + ", ".join(f"{n} {t}" for n, t in TRACE_COLUMNS) + ")",
    # Every list filter is "this column = x, newest first", hence (column, started_ms).
    # Covers every column the chart/cost aggregates read, so `stats` is an index-only scan of the time
    # range instead of a fetch of each (wide, content-carrying) row; it also serves the time-ordered list.
    "CREATE INDEX IF NOT EXISTS ix_traces_stats ON traces (started_ms, model, key_id, tenant_id, status,"
    " latency_bucket, ttft_bucket, input_tokens, output_tokens, reasoning_tokens, cached_tokens, cost_tokens_usd,"
    " cost_hardware_usd, fallback)",
    "CREATE INDEX IF NOT EXISTS ix_traces_key ON traces (key_id, started_ms)",
    "CREATE INDEX IF NOT EXISTS ix_traces_tenant ON traces (tenant_id, started_ms)",
    "CREATE INDEX IF NOT EXISTS ix_traces_model ON traces (model, started_ms)",
    "CREATE INDEX IF NOT EXISTS ix_traces_status ON traces (status, started_ms)",
    "CREATE INDEX IF NOT EXISTS ix_traces_session ON traces (session_id, started_ms)",
    "CREATE INDEX IF NOT EXISTS ix_traces_user ON traces (user_id, started_ms)",
    "CREATE TABLE IF NOT EXISTS trace_scores (score_id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, name TEXT NOT NULL,"
    " kind TEXT NOT NULL, value DOUBLE PRECISION, label TEXT, comment TEXT, author TEXT, created_ms BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_scores_trace ON trace_scores (trace_id)",
]

_FILTER_COLUMNS = ("tenant_id", "key_id", "user_id", "session_id", "model", "backend", "status", "error_type",
                   "endpoint")


@dataclass
class TraceFilter:
    """Which traces a query sees. Times are epoch milliseconds; `q` searches ids and captured content."""

    since_ms: int | None = None
    until_ms: int | None = None
    tenant_id: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    model: str | None = None
    backend: str | None = None
    status: str | None = None
    error_type: str | None = None
    endpoint: str | None = None
    fallback: bool | None = None
    min_latency_s: float | None = None
    q: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.since_ms is not None:
            clauses.append("started_ms >= ?")
            params.append(int(self.since_ms))
        if self.until_ms is not None:
            clauses.append("started_ms < ?")
            params.append(int(self.until_ms))
        for name in _FILTER_COLUMNS:
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{name} = ?")
                params.append(value)
        if self.fallback is not None:
            clauses.append("fallback = ?")
            params.append(int(self.fallback))
        if self.min_latency_s is not None:
            clauses.append("latency_s >= ?")
            params.append(self.min_latency_s)
        if self.q:
            needle = self.q.strip()
            like = "%" + needle.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
            clauses.append("(trace_id = ? OR session_id = ? OR LOWER(preview) LIKE ? ESCAPE '!'"
                           " OR LOWER(response) LIKE ? ESCAPE '!')")
            params += [needle, needle, like, like]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class TraceStore:
    """Reads and writes traces. Thread-safe: each call borrows a connection from a small pool."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self.is_postgres = url.startswith(("postgresql://", "postgres://"))
        if not self.is_postgres and not url.startswith("sqlite:///"):
            raise InvalidRequest(f"trace store URL {url!r} must start with sqlite:/// or postgresql://")
        self._pool: queue.LifoQueue = queue.LifoQueue(maxsize=pool_size)
        self._closed = False
        if not self.is_postgres:
            path = Path(url.removeprefix("sqlite:///"))
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            self._path = str(path)
        self._init_schema()

    # -- connections --

    def _connect(self):
        if self.is_postgres:
            try:
                import psycopg
            except ModuleNotFoundError as e:
                raise OssgateError("a postgresql:// trace store needs psycopg: pip install 'psycopg[binary]'") from e
            try:
                return psycopg.connect(self.url, autocommit=True)
            except psycopg.OperationalError as e:
                raise OssgateError(f"cannot connect to the trace store {self._safe_url()}: {e}") from e
        conn = sqlite3.connect(self._path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, fast commits
        return conn

    def _safe_url(self) -> str:
        if "@" in self.url:  # do not print a password
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://…@{rest.split('@', 1)[1]}"
        return self.url

    @contextlib.contextmanager
    def _conn(self):
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._connect()
        ok = False
        try:
            yield conn
            ok = True
        finally:
            if ok and not self._closed:
                try:
                    self._pool.put_nowait(conn)
                except queue.Full:
                    conn.close()
            else:
                conn.close()  # after an error the connection may be in a bad state

    @contextlib.contextmanager
    def _transaction(self, conn):
        if self.is_postgres:
            with conn.transaction():
                yield
        else:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.is_postgres else sql

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._conn() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(sql), list(params))
            return cur.fetchall()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(sql), list(params))
            return cur.rowcount

    def _init_schema(self) -> None:
        with self._conn() as conn:
            cur = conn.cursor()
            if self.is_postgres:
                # Two processes creating the schema at once would race on CREATE … IF NOT EXISTS.
                cur.execute("SELECT pg_advisory_lock(7077)")
            try:
                for statement in DDL:
                    cur.execute(statement)
                cur.execute(self._sql("SELECT value FROM observe_meta WHERE name = ?"), ["schema_version"])
                row = cur.fetchone()
                if row is None:
                    cur.execute(self._sql("INSERT INTO observe_meta (name, value) VALUES (?, ?)"),
                                ["schema_version", str(SCHEMA_VERSION)])
                elif int(row[0]) > SCHEMA_VERSION:
                    raise OssgateError(f"trace store {self._safe_url()} has schema version {row[0]}, newer than "
                                       f"this ossgate ({SCHEMA_VERSION}); upgrade ossgate")
            finally:
                if self.is_postgres:
                    cur.execute("SELECT pg_advisory_unlock(7077)")

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break

    # -- writing --

    def write(self, records: Sequence[dict[str, Any]]) -> int:
        """Insert finished traces in one transaction; a trace id already stored is skipped."""
        if not records:
            return 0
        placeholders = ", ".join("?" for _ in COLUMN_NAMES)
        sql = (f"INSERT INTO traces ({', '.join(COLUMN_NAMES)}) VALUES ({placeholders})"
               " ON CONFLICT (trace_id) DO NOTHING")
        rows = [tuple(r.get(c) for c in COLUMN_NAMES) for r in records]
        with self._conn() as conn, self._transaction(conn):
            conn.cursor().executemany(self._sql(sql), rows)
        return len(rows)

    def add_score(self, trace_id: str, *, name: str, kind: str, value: float | None, label: str | None,
                  comment: str | None, author: str | None = None) -> dict[str, Any]:
        score = {"score_id": uuid.uuid4().hex, "trace_id": trace_id, "name": name, "kind": kind, "value": value,
                 "label": label, "comment": comment, "author": author, "created_ms": int(time.time() * 1000)}
        cols = list(score)
        self._execute(f"INSERT INTO trace_scores ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                      [score[c] for c in cols])
        return score

    def prune(self, *, max_age_days: float | None, max_rows: int | None, now_ms: int | None = None) -> int:
        """Apply retention: drop traces (and their scores) older than `max_age_days`, then the oldest
        beyond `max_rows`. Returns how many traces were removed."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        removed = 0
        conditions: list[tuple[str, list[Any]]] = []
        if max_age_days is not None:
            conditions.append(("started_ms < ?", [now_ms - int(max_age_days * 86_400_000)]))
        if max_rows is not None:
            # The newest row beyond the cap, in the list order; it and everything older go (exact on ties).
            row = self._query("SELECT started_ms, trace_id FROM traces ORDER BY started_ms DESC, trace_id DESC"
                              " LIMIT 1 OFFSET ?", [max_rows])
            if row:
                conditions.append(("started_ms < ? OR (started_ms = ? AND trace_id <= ?)",
                                   [row[0][0], row[0][0], row[0][1]]))
        for condition, params in conditions:
            with self._conn() as conn, self._transaction(conn):
                cur = conn.cursor()
                cur.execute(self._sql("DELETE FROM trace_scores WHERE trace_id IN "
                                      f"(SELECT trace_id FROM traces WHERE {condition})"), params)
                cur.execute(self._sql(f"DELETE FROM traces WHERE {condition}"), params)
                removed += max(cur.rowcount, 0)
        if removed:
            log.info("retention pruned %s traces", removed)
        return removed

    # -- reading --

    def count(self, flt: TraceFilter | None = None) -> int:
        where, params = (flt or TraceFilter()).where()
        return int(self._query(f"SELECT COUNT(*) FROM traces{where}", params)[0][0])

    def list(self, flt: TraceFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Trace summaries (no content, no spans), newest first."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit {limit} is out of range 1..1000", param="limit")
        if offset < 0:
            raise InvalidRequest("offset must be ≥ 0", param="offset")
        where, params = (flt or TraceFilter()).where()
        rows = self._query(f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM traces{where}"
                           " ORDER BY started_ms DESC, trace_id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
        return [decode_record(dict(zip(SUMMARY_COLUMNS, row, strict=True))) for row in rows]

    def get(self, trace_id: str) -> dict[str, Any]:
        """A whole trace with its spans and scores; NotFound if the id is unknown."""
        rows = self._query(f"SELECT {', '.join(COLUMN_NAMES)} FROM traces WHERE trace_id = ?", [trace_id])
        if not rows:
            raise NotFound(f"no trace with id {trace_id!r} (it may have been pruned, or not written yet)")
        trace = decode_record(dict(zip(COLUMN_NAMES, rows[0], strict=True)))
        trace["scores"] = self.scores(trace_id)
        return trace

    def exists(self, trace_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM traces WHERE trace_id = ?", [trace_id]))

    def scores(self, trace_id: str) -> list[dict[str, Any]]:
        cols = ("score_id", "trace_id", "name", "kind", "value", "label", "comment", "author", "created_ms")
        rows = self._query(f"SELECT {', '.join(cols)} FROM trace_scores WHERE trace_id = ? ORDER BY created_ms",
                           [trace_id])
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def iter_all(self, flt: TraceFilter | None = None, *, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every matching trace, oldest first, fetched in keyset-paged batches (for export)."""
        where, params = (flt or TraceFilter()).where()
        last: tuple[int, str] | None = None
        while True:
            clause, extra = where, list(params)
            if last is not None:
                clause += (" AND " if clause else " WHERE ") + "(started_ms > ? OR (started_ms = ? AND trace_id > ?))"
                extra += [last[0], last[0], last[1]]
            rows = self._query(f"SELECT {', '.join(COLUMN_NAMES)} FROM traces{clause}"
                               " ORDER BY started_ms, trace_id LIMIT ?", [*extra, batch])
            for row in rows:
                yield decode_record(dict(zip(COLUMN_NAMES, row, strict=True)))
            if len(rows) < batch:
                return
            last = (rows[-1][COLUMN_NAMES.index("started_ms")], rows[-1][0])

    def stats(self, flt: TraceFilter, *, bucket_ms: int) -> dict[str, Any]:
        """Time-bucketed aggregates for charts plus cost breakdowns per model, key and UTC day."""
        if bucket_ms < 1000:
            raise InvalidRequest("bucket must be at least 1 second", param="bucket")
        where, params = flt.where()
        sums = ("COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END), SUM(input_tokens), SUM(output_tokens),"
                " SUM(reasoning_tokens), SUM(cached_tokens), SUM(cost_tokens_usd), SUM(cost_hardware_usd),"
                " SUM(fallback)")
        names = ("requests", "errors", "input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens",
                 "cost_tokens_usd", "cost_hardware_usd", "fallbacks")

        zero: dict[str, Any] = {n: 0.0 if n.startswith("cost") else 0 for n in names}

        def add(into: dict[str, Any], row: Sequence[Any]) -> None:
            for n, v in zip(names, row, strict=True):  # PostgreSQL sums BIGINT as NUMERIC (Decimal)
                into[n] += float(v or 0) if n.startswith("cost") else int(v or 0)

        # Three scans of the time range (each index-only thanks to ix_traces_stats): series sums with the
        # latency histogram, the TTFT histogram, and day × model × key sums for the breakdowns.
        series: dict[int, dict[str, Any]] = {}
        hist: dict[str, dict[int, list[tuple[int, int]]]] = {"latency": {}, "ttft": {}}
        for b, lb, *rest in self._query(f"SELECT started_ms / ? AS b, latency_bucket, {sums} FROM traces{where}"
                                         " GROUP BY b, latency_bucket", [bucket_ms, *params]):
            entry = series.setdefault(int(b), {"t": int(b) * bucket_ms / 1000.0, **zero})
            add(entry, rest)
            if lb is not None:
                hist["latency"].setdefault(int(b), []).append((int(lb), int(rest[0])))
        for b, tb, n in self._query(f"SELECT started_ms / ? AS b, ttft_bucket, COUNT(*) FROM traces{where}"
                                    " GROUP BY b, ttft_bucket", [bucket_ms, *params]):
            if tb is not None:
                hist["ttft"].setdefault(int(b), []).append((int(tb), int(n)))
        for b, entry in series.items():
            for prefix in ("latency", "ttft"):
                pct = percentiles(hist[prefix].get(b, []), (0.5, 0.9, 0.99))
                entry.update({f"{prefix}_p50_s": pct[0], f"{prefix}_p90_s": pct[1], f"{prefix}_p99_s": pct[2]})

        groups: dict[str, dict[Any, dict[str, Any]]] = {"day": {}, "model": {}, "key_id": {}}
        totals = dict(zero)
        for d, model, key, *rest in self._query(
                f"SELECT started_ms / ? AS d, model, key_id, {sums} FROM traces{where} GROUP BY d, model, key_id",
                [86_400_000, *params]):
            add(totals, rest)
            for label, value in (("day", d), ("model", model), ("key_id", key)):
                add(groups[label].setdefault(value, {label: value, **zero}), rest)

        def ordered(label: str) -> list[dict[str, Any]]:
            return [groups[label][k] for k in sorted(groups[label], key=lambda v: (v is None, v))]

        by_day = ordered("day")
        for entry in by_day:
            entry["day"] = time.strftime("%Y-%m-%d", time.gmtime(int(entry["day"]) * 86_400))
        return {"bucket_s": bucket_ms / 1000.0, "series": [series[b] for b in sorted(series)],
                "totals": totals, "by_model": ordered("model"), "by_key": ordered("key_id"), "by_day": by_day}

    def distinct(self, column: str, flt: TraceFilter | None = None, limit: int = 100) -> list[str]:
        """Values seen in a filter column (for the dashboard's drop-downs)."""
        if column not in _FILTER_COLUMNS:
            raise InvalidRequest(f"cannot list values of {column!r}; one of {', '.join(_FILTER_COLUMNS)}")
        where, params = (flt or TraceFilter()).where()
        where = where + (" AND " if where else " WHERE ") + f"{column} IS NOT NULL"
        rows = self._query(f"SELECT DISTINCT {column} FROM traces{where} LIMIT ?", [*params, limit])
        return sorted(r[0] for r in rows)


def decode_record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the API shows it: JSON columns parsed, flags as booleans, times in seconds."""
    out = dict(row)
    for key in ("attrs", "spans"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    if isinstance(out.get("prompt"), str) and out["prompt"].startswith("[{"):
        with contextlib.suppress(ValueError):
            out["prompt"] = json.loads(out["prompt"])
    for key in ("fallback", "stream"):
        if key in out:
            out[key] = bool(out[key])
    return out


def percentiles(hist: list[tuple[int, int]], qs: Sequence[float]) -> list[float | None]:
    """Percentiles from (log bucket, count) pairs, each as the bucket's representative value."""
    total = sum(n for _, n in hist)
    if total == 0:
        return [None for _ in qs]
    ordered = sorted(hist)
    out: list[float | None] = []
    for q in qs:
        rank, cum = q * total, 0
        for bucket, n in ordered:
            cum += n
            if cum >= rank:
                out.append(round(bucket_value_s(bucket), 6))
                break
    return out


FILTER_FIELDS = tuple(f.name for f in fields(TraceFilter))
