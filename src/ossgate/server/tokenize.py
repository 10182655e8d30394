"""POST /tokenize and /detokenize (vLLM's shapes): plain text, or a chat rendered in harmony."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ossgate import harmony
from ossgate.errors import InvalidRequest
from ossgate.server import convert
from ossgate.server.deps import KeyDep, ServicesDep
from ossgate.server.schemas import DetokenizeRequest, TokenizeRequest

router = APIRouter(tags=["tokenize"])


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, services: ServicesDep, key: KeyDep) -> dict[str, Any]:
    backend = services.router.pick(body.model)
    if body.messages is not None:
        tokens = harmony.render_prompt(convert.chat_messages(body.messages))
        if not body.add_generation_prompt:  # drop the trailing `<|start|>assistant`
            tokens = tokens[:-2]
    else:
        tokens = harmony.text_tokens(body.prompt)
    return {"tokens": tokens, "count": len(tokens), "max_model_len": backend.context}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, services: ServicesDep, key: KeyDep) -> dict[str, Any]:
    services.router.pick(body.model)
    vocab = harmony.encoding().n_vocab if hasattr(harmony.encoding(), "n_vocab") else 201088
    if bad := [t for t in body.tokens if not 0 <= t < vocab]:
        raise InvalidRequest(f"token {bad[0]} is outside the vocabulary (0..{vocab - 1})", param="tokens")
    return {"prompt": harmony.encoding().decode(body.tokens)}
