"""Optional second stage: a cross-encoder reads (query, passage) pairs and rescores the fused top hits.

Present only when `RagSettings.reranker_dir` names a sentence-transformers CrossEncoder directory;
there is no default model, and no stand-in when none is configured.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ossgate.rag.embedder import EmbedderError, _offline


class Reranker:
    def __init__(self, model_dir: Path, *, device: str = "cpu", batch_size: int = 16) -> None:
        _offline()
        from sentence_transformers import CrossEncoder

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").exists():
            raise EmbedderError(f"{self.model_dir} is not a cross-encoder model directory (no config.json)")
        try:
            self._model = CrossEncoder(str(self.model_dir), device=device, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EmbedderError(f"cannot load the reranker from {self.model_dir}: {e}") from e
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """One relevance score per passage (higher = more relevant)."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            scores = self._model.predict(
                [(query, p) for p in passages],
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        scores = np.asarray(scores, dtype=np.float32)
        return scores if scores.ndim == 1 else scores[:, -1]  # multi-label heads: the last logit is "relevant"
