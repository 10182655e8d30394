"""Retrieval-augmented generation: ingest documents, retrieve with hybrid search, ground answers in them.

store = open_store(RagSettings().store_url)
embedder = Embedder()                                   # all-MiniLM-L6-v2, offline
Ingestor(store, embedder).ingest("default", "handbook", [Path("docs/")])
hits = Retriever(store, embedder).search("default", "handbook", "how many vacation days?")
sources_text, citations = build_grounding(hits)        # -> developer instructions + response
"""

from ossgate.rag.answer import Answer, answer, build_grounding, grounded_messages
from ossgate.rag.embedder import Embedder, embeddings_response, shared_embedder
from ossgate.rag.ingest import Ingestor, IngestReport
from ossgate.rag.records import Chunk, Filters, ScoredChunk
from ossgate.rag.reranker import Reranker
from ossgate.rag.retrieve import Retriever, reciprocal_rank_fusion, retrieve
from ossgate.rag.settings import RagSettings
from ossgate.rag.store import ChunkStore, open_store

__all__ = [
    "Answer",
    "Chunk",
    "ChunkStore",
    "Embedder",
    "Filters",
    "IngestReport",
    "Ingestor",
    "RagSettings",
    "Reranker",
    "Retriever",
    "ScoredChunk",
    "answer",
    "build_grounding",
    "embeddings_response",
    "grounded_messages",
    "open_store",
    "reciprocal_rank_fusion",
    "retrieve",
    "shared_embedder",
]
