"""The server's database: SQLite (WAL) under the data dir by default, PostgreSQL by URL, one code path.

Queries are written with `?` placeholders and rewritten to `%s` for psycopg. Calls are synchronous and
short (an indexed lookup is tens of microseconds on SQLite); a lock serialises them on one connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ossgate.errors import OssgateError


class DatabaseError(OssgateError):
    status = 500
    type = "server_error"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn: Any = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA busy_timeout=5000")  # the CLI (keys create) and the server share the file
            self.postgres = False
        else:
            try:
                import psycopg  # noqa: PLC0415 - only for PostgreSQL deployments
            except ImportError as e:
                raise DatabaseError(
                    "database_url is postgresql:// but psycopg is not installed: pip install psycopg"
                ) from e
            try:
                self.conn = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)
            except psycopg.Error as e:
                raise DatabaseError(f"cannot connect to {url}: {e}") from e
            self.postgres = True

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        with self._lock:
            cur = self.conn.execute(self._sql(sql), tuple(params))
            return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return list(self.conn.execute(self._sql(sql), tuple(params)).fetchall())

    def close(self) -> None:
        with self._lock:
            self.conn.close()
