"""One exception hierarchy: every user-facing failure is an OssgateError with a message that says what to fix.

The server maps these to OpenAI's error JSON; the CLI prints the message on one line and exits non-zero.
"""


class OssgateError(Exception):
    """Base class. `status` is the HTTP status the server answers with; `code`/`param` go into the error JSON."""

    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None  # a subclass may fix its code; an instance may override it

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class CheckpointError(OssgateError):
    """A directory or file is not a readable gpt-oss checkpoint (names the file or tensor)."""

    status = 500
    type = "server_error"


class VocabularyError(OssgateError):
    """The offline o200k vocabulary is missing or does not match its published hash."""

    status = 500
    type = "server_error"


class InvalidRequest(OssgateError):
    """The caller asked for something malformed or out of range."""


class ContextOverflow(InvalidRequest):
    """Prompt plus requested tokens exceed what the model or the KV budget can hold."""

    code = "context_length_exceeded"


class NotFound(OssgateError):
    status = 404
    type = "not_found_error"


class Overloaded(OssgateError):
    """The admission queue is full; the client should retry later."""

    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, code="overloaded")
        self.retry_after = retry_after


class AuthError(OssgateError):
    status = 401
    type = "authentication_error"


class UpstreamError(OssgateError):
    """An external engine (OpenAI-compatible upstream) failed or is unreachable."""

    status = 502
    type = "upstream_error"


class EngineUnavailable(OssgateError):
    """The engine process is gone (crashed or killed); the server must be restarted."""

    status = 503
    type = "server_error"
    code = "engine_unavailable"
