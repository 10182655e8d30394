"""POST /v1/embeddings with the RAG embedder (ossgate.rag). Mounted only when ossgate.rag is installed.

The embedding model loads on the first request (seconds), not at start-up, so a server that never
embeds never pays for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from ossgate.errors import NotFound
from ossgate.server.deps import KeyDep, ServicesDep
from ossgate.server.schemas import EmbeddingRequest

router = APIRouter(tags=["embeddings"])


def embedder_name(services) -> str:
    from ossgate.rag.embedder import DEFAULT_MODEL_NAME  # noqa: PLC0415

    rag = services.settings.rag
    return rag.embedder_dir.name if rag is not None and rag.embedder_dir else DEFAULT_MODEL_NAME


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingRequest, services: ServicesDep, key: KeyDep) -> dict[str, Any]:
    from ossgate.rag.embedder import embeddings_response, shared_embedder  # noqa: PLC0415

    name = embedder_name(services)
    if body.model not in (None, name):
        raise NotFound(
            f"embedding model {body.model!r} does not exist; available: {name}", param="model", code="model_not_found"
        )
    rag = services.settings.rag
    embedder = await asyncio.to_thread(
        shared_embedder, rag.embedder_dir if rag else None, rag.embed_batch_size if rag else 32
    )
    return await asyncio.to_thread(embeddings_response, embedder, body.input, name)
