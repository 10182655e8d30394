"""Fixtures for the RAG tests: a private data dir, the real embedder, and both stores.

PostgreSQL tests need OSSGATE_TEST_PG_URL (`.ci/run` sources .ci/postgres.sh, which starts a real
PostgreSQL with pgvector and sets it); each test gets its own schema there, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from ossgate.rag.embedder import Embedder
from ossgate.rag.store import open_store

PG_URL = os.environ.get("OSSGATE_TEST_PG_URL")
PG_SKIP = "OSSGATE_TEST_PG_URL is not set: source .ci/postgres.sh to start PostgreSQL with pgvector"


@pytest.fixture(autouse=True)
def _home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("ossgate_home")
    monkeypatch.setenv("OSSGATE_HOME", str(home))
    for var in [v for v in os.environ if v.startswith("OSSGATE_RAG_")]:
        monkeypatch.delenv(var)
    return home


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


def _pg_schema_url() -> tuple[str, str]:
    """A fresh schema on the test server and a URL whose search_path puts it first."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema},public')}", schema


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """The URL of an empty store of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rag.db'}"
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    url, schema = _pg_schema_url()
    yield url
    _drop_schema(schema)


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def write(tmp_path):
    """write("dir/name.txt", text) -> Path, under a fresh documents directory."""
    root = tmp_path / "docs"
    root.mkdir()

    def _write(name: str, text: str) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    _write.root = root
    return _write


def _make_pdf(path, pages: list[str], title: str = "Compressor Manual") -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))


def _make_docx(path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Security Policy"
    d.add_heading("Access", level=1)
    d.add_paragraph("Badges are personal.")
    d.add_heading("Visitors", level=2)
    d.add_paragraph("Visitors sign in at reception.")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Zone B", "escort required"
    d.save(str(path))


@pytest.fixture
def make_pdf():
    """make_pdf(path, [page texts], title=...): a real PDF written with fpdf2, one page per text."""
    return _make_pdf


@pytest.fixture
def make_docx():
    """make_docx(path): a .docx written with python-docx: title, two heading levels, paragraphs, a table."""
    return _make_docx


def _integrity(store) -> dict:
    """Counts that must agree after any crash: chunks per document vs n_chunks, orphans, FTS rows."""
    from ossgate.rag.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        with store._tx() as cur:
            cur.execute(
                "SELECT count(*) FROM rag_documents d WHERE n_chunks <> "
                "(SELECT count(*) FROM rag_chunks c WHERE c.document_id = d.id)"
            )
            mismatched = cur.fetchone()[0]
            cur.execute(
                "SELECT count(*) FROM rag_chunks c LEFT JOIN rag_documents d ON d.id = c.document_id WHERE d.id IS NULL"
            )
            orphans = cur.fetchone()[0]
            cur.execute("SELECT count(*) - count(DISTINCT (tenant, collection, source)) FROM rag_documents")
            duplicates = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM rag_chunks")
            chunks = fts = cur.fetchone()[0]  # tsv is a generated column: always in step
    else:
        db = store._db
        mismatched = db.execute(
            "SELECT count(*) FROM documents d "
            "WHERE n_chunks <> (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
        ).fetchone()[0]
        orphans = db.execute(
            "SELECT count(*) FROM chunks c LEFT JOIN documents d ON d.id = c.document_id WHERE d.id IS NULL"
        ).fetchone()[0]
        duplicates = db.execute(
            "SELECT count(*) - count(DISTINCT tenant || '/' || collection || '/' || source) FROM documents"
        ).fetchone()[0]
        chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        fts = db.execute("SELECT count(*) FROM chunks_fts_docsize").fetchone()[0]
    return {"mismatched": mismatched, "orphans": orphans, "duplicates": duplicates, "chunks": chunks, "fts": fts}


@pytest.fixture
def integrity():
    """integrity(store) -> counts that must agree after any crash (mismatched, orphans, duplicates, chunks, fts)."""
    return _integrity
