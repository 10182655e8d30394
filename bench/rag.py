"""RAG store benchmark: ingest throughput, query latency p50/p99 and recall@10 of approximate vs exact search.

    python bench/rag.py --sizes 10000 100000 --stores sqlite postgres --out bench/results/rag.md

PostgreSQL needs OSSGATE_TEST_PG_URL (source .ci/postgres.sh); each run uses a fresh schema.
The corpus is synthetic so that 100k chunks can be made in seconds: texts of words drawn from a
Zipf-distributed vocabulary (with a unique part number per chunk, for full text), and clustered unit
vectors in 384 dims (like all-MiniLM-L6-v2's), since uniform random vectors are an unrealistically hard
case for HNSW. Store ingest is measured with precomputed vectors; the embedder's own throughput (the
real bound on end-to-end ingest) is measured separately on real text.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
from rich.progress import Progress

from ossgate.rag.records import ChunkRecord, DocumentRecord
from ossgate.rag.retrieve import reciprocal_rank_fusion
from ossgate.rag.store import open_store

DIM = 384
CHUNKS_PER_DOC = 50


def corpus(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20000)]
    ranks = np.minimum(rng.zipf(1.2, size=(n, 60)), len(vocab)) - 1
    texts = [f"Part PN-{i:06d}. " + " ".join(vocab[j] for j in row) for i, row in enumerate(ranks)]
    centers = rng.normal(size=(max(n // 100, 10), DIM)).astype(np.float32)
    vectors = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return texts, vectors


def pg_url() -> tuple[str, str]:
    import psycopg

    base = os.environ["OSSGATE_TEST_PG_URL"]
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema},public')}", schema


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(os.environ["OSSGATE_TEST_PG_URL"], autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


def percentile(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs), p))


def run(store_kind: str, n: int, n_queries: int, tmp: Path) -> dict:
    texts, vectors = corpus(n)
    schema = None
    url = f"sqlite:///{tmp / f'bench_{n}.db'}" if store_kind == "sqlite" else None
    if store_kind == "postgres":
        url, schema = pg_url()
    store = open_store(url)
    try:
        store.ensure_collection("bench", "c", embedder="synthetic", dimension=DIM)
        started = time.perf_counter()
        with Progress(transient=True) as progress:
            task = progress.add_task(f"{store_kind} ingest {n}", total=n)
            for d in range(0, n, CHUNKS_PER_DOC):
                chunks = [
                    ChunkRecord(i - d, texts[i], "", None, 0, len(texts[i]), 60)
                    for i in range(d, min(d + CHUNKS_PER_DOC, n))
                ]
                doc = DocumentRecord(f"doc{d}", f"doc {d}", "h", "f", {"shard": d % 7})
                store.replace_document("bench", "c", doc, chunks, vectors[d : d + len(chunks)])
                progress.advance(task, len(chunks))
        ingest_s = time.perf_counter() - started

        rng = np.random.default_rng(1)
        picks = rng.integers(0, n, n_queries)
        queries = vectors[picks] + 0.3 * rng.normal(size=(n_queries, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        text_queries = [f"PN-{i:06d} " + " ".join(texts[i].split()[2:5]) for i in picks]
        store.vector_search("bench", "c", queries[0], 10)  # warm: SQLite loads its matrix, PG its index pages
        lat = {"vector": [], "text": [], "hybrid": [], "vector_filtered": []}
        recalls = []
        for q, tq in zip(queries, text_queries, strict=True):
            t = time.perf_counter()
            approx = store.vector_search("bench", "c", q, 10)
            lat["vector"].append(time.perf_counter() - t)
            t = time.perf_counter()
            store.text_search("bench", "c", tq, 10)
            lat["text"].append(time.perf_counter() - t)
            t = time.perf_counter()
            th = store.text_search("bench", "c", tq, 50)
            vh = store.vector_search("bench", "c", q, 50)
            fused = reciprocal_rank_fusion([[i for i, _ in th], [i for i, _ in vh]])
            store.get_chunks("bench", "c", sorted(fused, key=lambda i: -fused[i])[:10])
            lat["hybrid"].append(time.perf_counter() - t)
            t = time.perf_counter()
            store.vector_search("bench", "c", q, 10, {"shard": 3})
            lat["vector_filtered"].append(time.perf_counter() - t)
            exact = store.vector_search("bench", "c", q, 10, exact=True)
            recalls.append(len({i for i, _ in approx} & {i for i, _ in exact}) / max(len(exact), 1))
        return {
            "store": store_kind,
            "chunks": n,
            "ingest_chunks_per_s": n / ingest_s,
            **{f"{k}_p50_ms": percentile(v, 50) * 1e3 for k, v in lat.items()},
            **{f"{k}_p99_ms": percentile(v, 99) * 1e3 for k, v in lat.items()},
            "recall_at_10": statistics.fmean(recalls),
        }
    finally:
        store.close()
        if schema:
            drop_schema(schema)


def embedder_throughput(n: int = 256) -> float:
    from ossgate.rag.embedder import Embedder

    embedder = Embedder()
    sentence = "The maintenance team inspects the hydraulic pump seals every quarter and logs the pressure readings. "
    texts = [f"Note {i}: " + sentence * 5 for i in range(n)]  # ~110 tokens each, like a real chunk
    embedder.embed(texts[:8])
    t = time.perf_counter()
    embedder.embed(texts)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--stores", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None, help="append a markdown table here")
    args = ap.parse_args()
    if "postgres" in args.stores and not os.environ.get("OSSGATE_TEST_PG_URL"):
        sys.exit("OSSGATE_TEST_PG_URL is not set: source .ci/postgres.sh first, or pass --stores sqlite")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            for kind in args.stores:
                row = run(kind, n, args.queries, Path(tmp))
                rows.append(row)
                print(row, flush=True)
    emb = embedder_throughput()
    header = (
        "| store | chunks | ingest chunks/s | hybrid p50 / p99 ms | vector p50 / p99 ms | vector+filter p50 / p99 ms "
        "| text p50 / p99 ms | recall@10 |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['store']} | {r['chunks']:,} | {r['ingest_chunks_per_s']:,.0f} "
        f"| {r['hybrid_p50_ms']:.1f} / {r['hybrid_p99_ms']:.1f} "
        f"| {r['vector_p50_ms']:.1f} / {r['vector_p99_ms']:.1f} | {r['vector_filtered_p50_ms']:.1f} / "
        f"{r['vector_filtered_p99_ms']:.1f} | {r['text_p50_ms']:.1f} / {r['text_p99_ms']:.1f} "
        f"| {r['recall_at_10']:.3f} |"
        for r in rows
    ]
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    text = (
        f"\n## `python bench/rag.py --sizes {' '.join(map(str, args.sizes))} --stores {' '.join(args.stores)} "
        f"--queries {args.queries}`\n\nMachine: {machine}; {time.strftime('%Y-%m-%d')}.\n\n"
        + header
        + "\n".join(lines)
        + f"\n\nEmbedding (all-MiniLM-L6-v2, CPU, ~110-token chunks): {emb:.0f} chunks/s"
        " — the bound on end-to-end ingest.\n"
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
