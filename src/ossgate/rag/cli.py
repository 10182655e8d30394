"""`ossgate ingest`, `ossgate docs list|rm`, `ossgate search`, `ossgate ask`.

Configuration comes from `OSSGATE_RAG_*` environment variables (see RagSettings), e.g.
OSSGATE_RAG_STORE_URL=postgresql://... ; the commands act for the tenant given by --tenant
(default "default").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ossgate.cli_errors import run as _run
from ossgate.errors import InvalidRequest, NotFound
from ossgate.rag.answer import GenerateFn, answer, build_grounding, grounded_messages
from ossgate.rag.embedder import Embedder, shared_embedder
from ossgate.rag.ingest import Ingestor
from ossgate.rag.records import Filters
from ossgate.rag.reranker import Reranker
from ossgate.rag.retrieve import Retriever
from ossgate.rag.settings import RagSettings
from ossgate.rag.store import ChunkStore, open_store

app = typer.Typer(help="Documents: ingest, list, remove, search and ask with citations.", no_args_is_help=True)
docs_app = typer.Typer(help="List and remove ingested documents.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")

console = Console()
err = Console(stderr=True, soft_wrap=True)  # soft wrap: an error stays one line

Tenant = Annotated[
    str | None, typer.Option(help="Tenant whose collections to use (default: OSSGATE_RAG_DEFAULT_TENANT or 'default').")
]
Collection = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]


def _settings() -> RagSettings:
    try:
        return RagSettings()
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise InvalidRequest(f"invalid OSSGATE_RAG_* setting: {e}") from e


def _embedder(s: RagSettings) -> Embedder:
    return shared_embedder(s.embedder_dir, s.embed_batch_size)


def _parse_pairs(pairs: list[str], what: str) -> dict:
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"{what} {pair!r} must look like key=value")
        try:
            value = json.loads(raw)  # page=3 -> 3, flag=true -> True, name=x -> "x"
        except json.JSONDecodeError:
            value = raw
        if not isinstance(value, str | int | float | bool):
            value = raw
        out.setdefault(key, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (searched recursively).")],
    collection: Collection,
    exclude: Annotated[
        list[str], typer.Option(help="Glob of files to skip (repeatable), e.g. '*.log' or 'drafts/*'.")
    ] = [],  # noqa: B006
    prune: Annotated[bool, typer.Option(help="Remove documents under PATHS whose files are gone.")] = False,
    meta: Annotated[list[str], typer.Option(help="key=value metadata for every file (repeatable).")] = [],  # noqa: B006
    tenant: Tenant = None,
) -> None:
    """Parse, chunk, embed and store documents (txt, md, html, pdf, docx, csv, json, jsonl); skips unchanged files."""

    def run() -> None:
        s = _settings()
        metadata = _parse_pairs(meta, "--meta")
        if any(isinstance(v, list) for v in metadata.values()):
            raise InvalidRequest("--meta gives each key once")
        for path in paths:
            if not path.exists():
                raise InvalidRequest(f"{path}: no such file or directory")
        store = open_store(s.store_url)
        try:
            ingestor = Ingestor(store, _embedder(s), s.chunk_tokens, s.chunk_overlap)
            with Progress(
                TextColumn("[bold]ingest[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=err,
                transient=False,
            ) as progress:
                task = progress.add_task("", total=None)
                report = ingestor.ingest(
                    tenant or s.default_tenant,
                    collection,
                    paths,
                    exclude=exclude,
                    prune=prune,
                    metadata=metadata,
                    on_start=lambda n: progress.update(task, total=n),
                    on_file=lambda p, status: progress.update(task, advance=1, description=f"{status}: {p.name}"),
                )
        finally:
            store.close()
        for source, why in report.failed:
            err.print(f"failed: {source}: {why}", markup=False, highlight=False)
        console.print(
            f"{collection}: {len(report.added)} added, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged, {len(report.removed)} removed, {len(report.failed)} failed; "
            f"{report.chunks} chunks in {report.seconds:.1f}s"
        )
        if report.failed:
            raise typer.Exit(1)

    _run(run)


@docs_app.command("list")
def docs_list(
    collection: Annotated[
        str | None,
        typer.Option("--collection", "-c", help="List this collection's documents; without it, list collections."),
    ] = None,
    tenant: Tenant = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List collections, or the documents of one collection."""

    def run() -> None:
        s = _settings()
        t = tenant or s.default_tenant
        with open_store(s.store_url) as store:
            if collection is None:
                rows = [vars(c) for c in store.list_collections(t)]
                columns = ["name", "documents", "chunks", "embedder"]
            else:
                if store.collection(t, collection) is None:
                    raise NotFound(f"no collection named {collection!r}")
                rows = [vars(d) for d in store.list_documents(t, collection)]
                columns = ["source", "title", "n_chunks", "content_hash"]
        if as_json:
            console.print_json(json.dumps(rows))
            return
        table = Table(*columns)
        for r in rows:
            table.add_row(*(str(r[c])[:16] if c == "content_hash" else str(r[c]) for c in columns))
        console.print(table)

    _run(run)


@docs_app.command("rm")
def docs_rm(
    sources: Annotated[list[str], typer.Argument(help="Document sources (paths) to remove.")] = [],  # noqa: B006
    collection: Collection = ...,
    all_: Annotated[bool, typer.Option("--all", help="Remove the whole collection.")] = False,
    tenant: Tenant = None,
) -> None:
    """Remove documents (by source path) or, with --all, the whole collection."""

    def run() -> None:
        s = _settings()
        t = tenant or s.default_tenant
        if not sources and not all_:
            raise InvalidRequest("name the sources to remove, or pass --all to remove the collection")
        with open_store(s.store_url) as store:
            if all_:
                if not store.delete_collection(t, collection):
                    raise NotFound(f"no collection named {collection!r}")
                console.print(f"removed collection {collection}")
                return
            missing = []
            for source in sources:
                # accept the path as typed: stored sources are resolved paths
                candidates = [source, str(Path(source).resolve())]
                if not any(store.delete_document(t, collection, c) for c in candidates):
                    missing.append(source)
            console.print(f"removed {len(sources) - len(missing)} document(s)")
            if missing:
                raise NotFound(f"not in {collection!r}: {', '.join(missing)}")

    _run(run)


def _retriever(s: RagSettings, store: ChunkStore) -> Retriever:
    reranker = Reranker(s.reranker_dir) if s.reranker_dir else None
    return Retriever(store, _embedder(s), reranker, candidates=s.candidates, rrf_k=s.rrf_k)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    collection: Collection,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many chunks.")] = 5,
    filter_: Annotated[
        list[str],
        typer.Option("--filter", help="key=value (repeat a key for any-of); keys: source, title, page or metadata."),
    ] = [],  # noqa: B006
    mode: Annotated[str, typer.Option(help="hybrid, vector or text.")] = "hybrid",
    tenant: Tenant = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the best-matching chunks with their scores."""

    def run() -> None:
        s = _settings()
        filters: Filters = _parse_pairs(filter_, "--filter")
        with open_store(s.store_url) as store:
            hits = _retriever(s, store).search(tenant or s.default_tenant, collection, query, top_k, filters, mode=mode)
        if as_json:
            _, citations = build_grounding(hits)
            console.print_json(json.dumps(citations))
            return
        for n, h in enumerate(hits, start=1):
            where = f"{h.chunk.title}" + (f", page {h.chunk.page}" if h.chunk.page is not None else "")
            console.print(f"[bold][{n}][/] {h.score:.4f}  {where}  [dim]{h.chunk.source}[/]")
            console.print("    " + " ".join(h.chunk.text.split())[:300], markup=False, highlight=False)

    _run(run)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: Collection,
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 5,
    tenant: Tenant = None,
    show_prompt: Annotated[
        bool, typer.Option(help="Print the grounded prompt and sources without generating.")
    ] = False,
    model: Annotated[
        Path | None, typer.Option(help="Checkpoint directory (default: the embedded gpt-oss-nano).")
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 512,
) -> None:
    """Answer from the collection's documents, citing the numbered sources it used."""

    def run() -> None:
        s = _settings()
        with open_store(s.store_url) as store:
            hits = _retriever(s, store).search(tenant or s.default_tenant, collection, question, top_k)
        if show_prompt:
            for m in grounded_messages(question, hits):
                console.print(f"--- {m.role} ---", style="bold")
                console.print(m.content, markup=False, highlight=False)
            return
        result = answer(question, hits, _local_generator(model, max_tokens))
        console.print(result.text, markup=False, highlight=False)
        console.print("\nSources:", style="bold")
        for c in result.citations:
            mark = "*" if c["index"] in result.cited else " "
            page = f", page {c['page']}" if c["page"] is not None else ""
            console.print(f"{mark}[{c['index']}] {c['title']}{page} — {c['source']}", markup=False, highlight=False)

    _run(run)


def _local_generator(model: Path | None, max_tokens: int) -> GenerateFn:
    """Answer with the native engine on a local checkpoint (greedy, so answers are reproducible)."""
    from ossgate.engine.generate import chat
    from ossgate.engine.sampling import SamplingParams
    from ossgate.model.checkpoint import load_model
    from ossgate.nano import model_path

    net = load_model(model or model_path(), show_progress=False)

    def generate(messages):
        return chat(net, messages, SamplingParams(max_tokens=max_tokens, temperature=0)).completion.final

    return generate


if __name__ == "__main__":  # `python -m ossgate.rag.cli ...` (tests, or before the lead registers the sub-app)
    sys.exit(app())
