"""Hybrid retrieval: full-text and vector rankings fused by reciprocal rank fusion, optionally reranked.

Full text finds exact identifiers (part numbers, error codes) that embeddings blur; vectors find
paraphrases that share no word with the passage. RRF (Cormack, Clarke & Buettcher, SIGIR 2009) sums
1/(k + rank) over the rankings, which needs no calibration between BM25 scores and cosines. Both
rankings are taken with the filters inside the store query, then fused; a cross-encoder, when one is
configured, rescores the fused head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ossgate.errors import InvalidRequest, NotFound
from ossgate.rag.embedder import Embedder
from ossgate.rag.records import Filters, ScoredChunk
from ossgate.rag.reranker import Reranker
from ossgate.rag.store.base import ChunkStore

Mode = Literal["hybrid", "vector", "text"]
MAX_TOP_K = 100


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60) -> dict[int, float]:
    """{id: sum over rankings of 1 / (k + rank)} with 1-based ranks; ids absent from a ranking add nothing."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


@dataclass
class Retriever:
    """Searches one store with one embedder (the one its collections were embedded with)."""

    store: ChunkStore
    embedder: Embedder
    reranker: Reranker | None = None
    candidates: int = 50  # hits each ranker contributes before fusion
    rrf_k: int = 60
    rerank_depth: int = 30  # how many fused hits the cross-encoder reads

    def search(
        self,
        tenant: str,
        collection: str,
        query: str,
        top_k: int = 5,
        filters: Filters | None = None,
        *,
        mode: Mode = "hybrid",
    ) -> list[ScoredChunk]:
        """The `top_k` best chunks of `tenant`'s `collection` for `query`, best first, with scores.

        Score: the RRF score in hybrid mode, BM25/ts_rank in text mode, cosine in vector mode, and the
        cross-encoder's score when a reranker is configured. Raises NotFound for a collection this
        tenant does not have (whether or not another tenant has one of that name).
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest("the query is empty", param="query")
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequest(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}", param="top_k")
        if mode not in ("hybrid", "vector", "text"):
            raise InvalidRequest(f"mode must be hybrid, vector or text, got {mode!r}", param="mode")
        info = self.store.collection(tenant, collection)
        if info is None:
            raise NotFound(f"no collection named {collection!r}; ingest documents into it first", param="collection")
        if info.embedder != self.embedder.name or info.dimension != self.embedder.dimension:
            raise InvalidRequest(
                f"collection {collection!r} was embedded with {info.embedder}, but the configured embedder is "
                f"{self.embedder.name}; configure the same embedder to search it",
                param="collection",
            )
        depth = max(self.candidates, top_k)
        text_hits = vector_hits = []
        if mode in ("hybrid", "text"):
            text_hits = self.store.text_search(tenant, collection, query, depth, filters)
        if mode in ("hybrid", "vector"):
            vector = self.embedder.embed([query])[0]
            vector_hits = self.store.vector_search(tenant, collection, vector, depth, filters)
        text_rank = {cid: r for r, (cid, _) in enumerate(text_hits, start=1)}
        vector_rank = {cid: r for r, (cid, _) in enumerate(vector_hits, start=1)}
        if mode == "hybrid":
            fused = reciprocal_rank_fusion([[c for c, _ in text_hits], [c for c, _ in vector_hits]], self.rrf_k)
        else:
            fused = dict(text_hits or vector_hits)
        order = sorted(fused, key=lambda c: (-fused[c], c))
        head = order[: max(top_k, self.rerank_depth) if self.reranker else top_k]
        chunks = self.store.get_chunks(tenant, collection, head)
        hits = [ScoredChunk(chunks[c], fused[c], text_rank.get(c), vector_rank.get(c)) for c in head if c in chunks]
        if self.reranker and hits:
            scores = self.reranker.score(query, [h.chunk.text for h in hits])
            for h, s in zip(hits, scores, strict=True):
                h.rerank_score = h.score = float(s)
            hits.sort(key=lambda h: -h.score)
        return hits[:top_k]


def retrieve(
    retriever: Retriever, tenant: str, collection: str, query: str, top_k: int = 5, filters: Filters | None = None
) -> list[ScoredChunk]:
    """What the server calls for `"rag": {...}` and `file_search`: hybrid search in the tenant's collection."""
    return retriever.search(tenant, collection, query, top_k, filters)
