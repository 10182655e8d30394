"""Router: model name -> the backend that serves it."""

from __future__ import annotations

from ossgate.backends.base import Backend
from ossgate.backends.native import NativeBackend
from ossgate.backends.openai_upstream import OpenAIUpstreamBackend
from ossgate.errors import NotFound
from ossgate.settings import ModelSettings


def build_backend(settings: ModelSettings) -> Backend:
    if settings.backend == "openai":
        return OpenAIUpstreamBackend(settings)
    return NativeBackend(settings)


class Router:
    """Picks the backend for a request's `model`. The first configured model is the default."""

    def __init__(self, backends: list[Backend]) -> None:
        assert backends, "a router needs at least one backend"
        self.backends = {b.name: b for b in backends}
        self.default = backends[0].name

    @classmethod
    def from_settings(cls, models: list[ModelSettings]) -> Router:
        return cls([build_backend(m) for m in models])

    def pick(self, model: str | None) -> Backend:
        if not model:
            return self.backends[self.default]
        try:
            return self.backends[model]
        except KeyError:
            raise NotFound(
                f"model {model!r} does not exist; available: {', '.join(self.backends)}",
                param="model",
                code="model_not_found",
            ) from None

    async def start(self) -> None:
        for b in self.backends.values():
            await b.start()

    async def close(self) -> None:
        for b in self.backends.values():
            await b.close()
