"""The one settings object of an ossgate deployment: `ossgate.toml`, or `OSSGATE_*` environment variables.

Every default works offline on one machine: the embedded nano model, SQLite under the data dir,
127.0.0.1:8000. Bad values are refused when the settings are built (at start-up), with a message that
names the field, never at the first request.

    [server]                      # or top-level keys: host, port, ...
    host = "127.0.0.1"
    [[models]]
    name = "gpt-oss-20b"
    backend = "native"            # the ossgate engine
    path = "/models/gpt-oss-20b"
    [[models]]
    name = "big"
    backend = "openai"            # any OpenAI-compatible upstream: vLLM, llama.cpp server, Ollama
    upstream = "http://10.0.0.5:8000/v1"
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ossgate.errors import InvalidRequest
from ossgate.vocab import data_dir

NANO_MODEL_NAME = "gpt-oss-nano"


def default_database_url() -> str:
    return f"sqlite:///{data_dir() / 'ossgate.db'}"


class ModelSettings(BaseModel):
    """One model the server offers, and the backend that runs it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the `model` clients ask for")
    backend: Literal["native", "openai"] = "native"
    # native: a checkpoint directory (Hugging Face or original layout); None = the embedded nano model
    path: Path | None = None
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    device: str = "cpu"
    # native: where the engine's step loop runs. "process": its own process, so the step loop and the HTTP
    # side never share a GIL (vLLM V1's design). "thread": a thread of the server process, one process to
    # watch. On the loaded 2-core test machine both measured alike (bench/results/serve.md).
    engine: Literal["process", "thread"] = "process"
    # openai: the upstream's base URL including /v1, e.g. http://127.0.0.1:8001/v1
    upstream: str | None = None
    upstream_model: str | None = Field(None, description="the name the upstream knows it by; default: name")
    upstream_api_key: str | None = None
    upstream_timeout_s: float = Field(600.0, gt=0)
    context: int | None = Field(None, ge=16, description="context length; default: the model's")
    default_max_tokens: int | None = Field(None, ge=1, description="when a request sets none; default: rest of context")
    max_running: int = Field(32, ge=1, description="sequences decoded together (native) / concurrent upstream calls")
    max_tokens_per_step: int = Field(512, ge=1)
    kv_budget_mb: int = Field(2048, ge=1)
    prefix_cache_mb: int = Field(256, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"model name {v!r} must be non-empty and contain no spaces")
        return v

    @model_validator(mode="after")
    def _backend_fields(self) -> ModelSettings:
        if self.backend == "openai":
            if not self.upstream or not self.upstream.startswith(("http://", "https://")):
                raise ValueError(f"model {self.name!r}: backend 'openai' needs upstream = 'http(s)://host:port/v1'")
        elif self.upstream:
            raise ValueError(f"model {self.name!r}: upstream is only for backend 'openai'")
        return self


def _optional_settings(module: str, cls: str) -> type[BaseSettings] | None:
    """Settings classes of features built separately (rag, observe): nested when their module exists."""
    if importlib.util.find_spec(module) is None:
        return None
    mod = importlib.import_module(module)
    return getattr(mod, cls, None)


_RagSettings = _optional_settings("ossgate.rag.settings", "RagSettings")
_ObserveSettings = _optional_settings("ossgate.observe.settings", "ObserveSettings")


class Settings(BaseSettings):
    """Everything `ossgate serve` needs. Build with `Settings.load()`."""

    model_config = SettingsConfigDict(env_prefix="OSSGATE_", env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    models: list[ModelSettings] = Field(default_factory=list, description="empty: the embedded nano model")
    database_url: str = Field(default_factory=default_database_url, description="sqlite:///PATH or postgresql://…")
    # Binding beyond loopback with no API key is refused: anyone on the network could use the GPUs.
    allow_unauthenticated: bool = False
    queue_size: int = Field(64, ge=0, description="requests waiting per model beyond those running; then 429")
    default_requests_per_minute: int | None = Field(None, ge=1, description="per API key, unless the key sets its own")
    default_tokens_per_minute: int | None = Field(None, ge=1, description="prompt + completion tokens per key")
    shutdown_grace_s: float = Field(30.0, ge=0, description="in-flight streams get this long to finish on shutdown")
    cors_origins: list[str] = Field(default_factory=list)
    # CPU threads per op for native models; None: PyTorch's default (one per core). On a CPU shared with
    # other processes, 1 avoids OpenMP barrier stalls that can slow decoding tenfold.
    torch_threads: int | None = Field(None, ge=1)
    rag: Any = Field(None, validate_default=True)  # RagSettings when ossgate.rag is installed (see _nested)
    observe: Any = Field(None, validate_default=True)  # ObserveSettings when ossgate.observe is installed

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(f"database_url {v!r} must start with sqlite:/// (a file path) or postgresql://")
        return v

    @field_validator("rag", mode="before")
    @classmethod
    def _rag(cls, v: Any) -> Any:
        return _nested(_RagSettings, v, "rag")

    @field_validator("observe", mode="before")
    @classmethod
    def _observe(cls, v: Any) -> Any:
        return _nested(_ObserveSettings, v, "observe")

    @model_validator(mode="after")
    def _unique_models(self) -> Settings:
        names = [m.name for m in self.models]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return self

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the server."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> Settings:
        """From `path`, else $OSSGATE_CONFIG, else ./ossgate.toml if present; env vars fill what the file leaves.

        Raises InvalidRequest (one line naming the field) on a bad file or value.
        """
        path = path or (Path(p) if (p := os.environ.get("OSSGATE_CONFIG")) else None)
        if path is None and Path("ossgate.toml").exists():
            path = Path("ossgate.toml")
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text())
            except FileNotFoundError as e:
                raise InvalidRequest(f"config file {path} does not exist") from e
            except tomllib.TOMLDecodeError as e:
                raise InvalidRequest(f"{path}: not valid TOML ({e})") from e
            data = {**data.pop("server", {}), **data}  # [server] table or top-level keys, same meaning
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            source = f"{path}: " if path else ""
            raise InvalidRequest(f"{source}{where}: {first['msg']}") from e

    def resolved_models(self) -> list[ModelSettings]:
        """The configured models, or the embedded nano model when none are configured."""
        return self.models or [ModelSettings(name=NANO_MODEL_NAME)]


def _nested(settings_cls: type[BaseSettings] | None, value: Any, field: str) -> Any:
    if settings_cls is None:
        if value not in (None, {}):
            raise ValueError(f"[{field}] is configured but the ossgate.{field} module is not installed")
        return None
    if isinstance(value, settings_cls):
        return value
    return settings_cls(**(value or {}))
