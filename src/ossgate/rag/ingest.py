"""Files -> parsed, chunked, embedded documents in a collection; incremental, prunable, crash-safe.

A document is identified by its resolved path. Its fingerprint (file sha256 + metadata + chunking
settings + embedder) decides what a re-run does: same fingerprint -> skipped, different -> replaced,
gone from the walked paths -> removed when pruning. Parsing and embedding happen outside any
transaction; the store then writes the document and all its chunks in one transaction, so a run
killed at any point leaves each document either fully old or fully new, and a re-run finishes the job.

Metadata for a file comes from `--meta key=value` flags and from a sidecar `FILE.meta.json` (a JSON
object) next to it; the sidecar wins on conflicts.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ossgate.errors import InvalidRequest, OssgateError
from ossgate.rag.chunking import chunk_document
from ossgate.rag.embedder import Embedder
from ossgate.rag.parsers import parse, supported
from ossgate.rag.records import ChunkRecord, DocumentRecord, MetaValue
from ossgate.rag.store.base import ChunkStore, check_metadata

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".meta.json"
PIPELINE_VERSION = 1  # bump when parsing or chunking changes, so every document is re-ingested

Status = str  # "added" | "updated" | "unchanged" | "removed" | "failed"


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    chunks: int = 0  # chunks written in this run
    seconds: float = 0.0


def discover(paths: Iterable[Path], exclude: Sequence[str] = ()) -> list[Path]:
    """Supported files under `paths` (directories recursively), resolved, sorted, minus `exclude` globs.

    A glob matches a file's name or its path relative to the directory given (`*.log`, `drafts/*`).
    Hidden files and directories and `.meta.json` sidecars are skipped.
    """
    found: set[Path] = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise InvalidRequest(f"{root}: no such file or directory")
        if root.is_file():
            candidates = [(root, root.name)]
        else:
            candidates = [
                (p, p.relative_to(root).as_posix())
                for p in root.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
            ]
        for path, rel in candidates:
            if path.name.endswith(SIDECAR_SUFFIX) or not supported(path):
                continue
            if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(path.name, g) for g in exclude):
                continue
            found.add(path.resolve())
    return sorted(found)


def read_sidecar(path: Path) -> dict[str, MetaValue]:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.exists():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InvalidRequest(f"{sidecar}: invalid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(data, dict):
        raise InvalidRequest(f"{sidecar}: must hold a JSON object of metadata")
    return check_metadata(data)


def embedding_text(title: str, chunk: ChunkRecord) -> str:
    """What gets embedded: the passage with its document title and heading, for context the passage lacks."""
    return "\n".join(part for part in (title, chunk.heading, chunk.text) if part)


@dataclass
class Ingestor:
    store: ChunkStore
    embedder: Embedder
    chunk_tokens: int = 200
    chunk_overlap: int = 40

    def _fingerprint(self, content_hash: str, metadata: dict) -> str:
        spec = {
            "content": content_hash,
            "metadata": metadata,
            "chunking": [self.chunk_tokens, self.chunk_overlap, PIPELINE_VERSION],
            "embedder": [self.embedder.name, self.embedder.dimension],
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def ingest_file(
        self, tenant: str, collection: str, path: Path, metadata: dict[str, MetaValue] | None = None
    ) -> tuple[Status, int]:
        """Ingest one file (already resolved); returns (status, chunks written)."""
        source = str(path)
        data = path.read_bytes()
        content_hash = hashlib.sha256(data).hexdigest()
        meta = check_metadata({**(metadata or {}), **read_sidecar(path)})
        fingerprint = self._fingerprint(content_hash, meta)
        existing = self.store.get_document(tenant, collection, source)
        if existing is not None and existing.fingerprint == fingerprint:
            return "unchanged", 0
        doc = parse(path)
        chunks = chunk_document(
            doc, self.embedder.count_tokens, chunk_tokens=self.chunk_tokens, overlap=self.chunk_overlap
        )
        embeddings = self.embedder.embed([embedding_text(doc.title, c) for c in chunks])
        record = DocumentRecord(source, doc.title, content_hash, fingerprint, meta, time.time(), len(chunks))
        self.store.replace_document(tenant, collection, record, chunks, embeddings)
        return ("added" if existing is None else "updated"), len(chunks)

    def ingest(
        self,
        tenant: str,
        collection: str,
        paths: Sequence[Path],
        *,
        exclude: Sequence[str] = (),
        prune: bool = False,
        metadata: dict[str, MetaValue] | None = None,
        on_file: Callable[[Path, Status], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Bring `collection` in line with the files under `paths`. With `prune`, documents whose source
        lies under one of `paths` but was not found this run are removed. A file that fails to parse is
        reported and skipped; its previously ingested version, if any, stays."""
        started = time.perf_counter()
        self.store.ensure_collection(tenant, collection, embedder=self.embedder.name, dimension=self.embedder.dimension)
        files = discover(paths, exclude)
        if on_start:
            on_start(len(files))
        report = IngestReport()
        for path in files:
            try:
                status, n = self.ingest_file(tenant, collection, path, metadata)
            except (OssgateError, OSError, UnicodeError) as e:
                log.warning("ingest of %s failed: %s", path, e)
                status, n = "failed", 0
                report.failed.append((str(path), str(getattr(e, "message", e))))
            else:
                getattr(report, status).append(str(path))
                report.chunks += n
            if on_file:
                on_file(path, status)
        if prune:
            seen = {str(p) for p in files}
            roots = [Path(p).resolve() for p in paths]
            for doc in self.store.list_documents(tenant, collection):
                source = Path(doc.source)
                under = any(source == r or r in source.parents for r in roots)
                if under and doc.source not in seen and self.store.delete_document(tenant, collection, doc.source):
                    report.removed.append(doc.source)
        report.seconds = time.perf_counter() - started
        return report
