"""The retrieval stage (ossgate.rag): present when ossgate.rag is installed, active only for requests
that ask for a collection — `"rag": {"collection": ...}` on chat completions, a `file_search` tool in
Responses. The sources go into the developer instructions (rag.build_grounding's spotlighted block)
and the response carries `citations`."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, replace
from typing import Any

from ossgate.backends.base import ChatTurn
from ossgate.errors import InvalidRequest
from ossgate.harmony import ChatMessage
from ossgate.server.pipeline import Exchange


@dataclass
class RetrievalRequest:
    """What a request asked to retrieve; the query defaults to the last user message."""

    collection: str
    top_k: int = 5
    query: str | None = None


def from_chat_extension(rag: dict[str, Any]) -> RetrievalRequest:
    collection = rag.get("collection")
    if not isinstance(collection, str) or not collection:
        raise InvalidRequest("rag.collection must name a collection (see `ossgate ingest`)", param="rag.collection")
    top_k = rag.get("top_k", 5)
    if not isinstance(top_k, int) or not 1 <= top_k <= 50:
        raise InvalidRequest("rag.top_k must be an integer between 1 and 50", param="rag.top_k")
    query = rag.get("query")
    if query is not None and not isinstance(query, str):
        raise InvalidRequest("rag.query must be a string", param="rag.query")
    return RetrievalRequest(collection, top_k, query)


def from_file_search_tool(tool: dict[str, Any], where: str) -> RetrievalRequest:
    ids = tool.get("vector_store_ids")
    if not isinstance(ids, list) or len(ids) != 1 or not isinstance(ids[0], str):
        raise InvalidRequest(f"{where}.vector_store_ids must list exactly one collection name", param=where)
    top_k = tool.get("max_num_results", 5)
    if not isinstance(top_k, int) or not 1 <= top_k <= 50:
        raise InvalidRequest(f"{where}.max_num_results must be between 1 and 50", param=where)
    return RetrievalRequest(ids[0], top_k)


class RetrieveStage:
    name = "retrieve"

    def __init__(self, settings: Any) -> None:
        self.settings = settings  # RagSettings

    @functools.cached_property
    def retriever(self):
        """Opened on first use: loading the embedder takes seconds a server that never retrieves should not pay."""
        from ossgate.rag import Reranker, Retriever, open_store, shared_embedder  # noqa: PLC0415

        s = self.settings
        reranker = Reranker(s.reranker_dir) if s.reranker_dir else None
        embedder = shared_embedder(s.embedder_dir, s.embed_batch_size)
        return Retriever(open_store(s.store_url), embedder, reranker, s.candidates, s.rrf_k)

    def _search(self, tenant: str, req: RetrievalRequest, query: str):
        from ossgate.rag import build_grounding, retrieve  # noqa: PLC0415

        return build_grounding(retrieve(self.retriever, tenant, req.collection, query, req.top_k))

    async def run(self, ctx: Exchange) -> None:
        req: RetrievalRequest | None = ctx.retrieval
        if req is None:
            return
        first = ctx.turns[0]
        assert isinstance(first, ChatTurn), "retrieval applies to chat-shaped requests"
        query = req.query or next((m.content for m in reversed(first.messages) if m.role == "user"), "")
        if not query.strip():
            raise InvalidRequest("retrieval needs a user message (or rag.query) to search with", param="rag")
        sources, ctx.citations = await asyncio.to_thread(self._search, ctx.key.tenant, req, query)
        if sources:  # every choice reads the same sources
            ctx.turns = [replace(t, messages=[*t.messages, ChatMessage("developer", sources)]) for t in ctx.turns]
