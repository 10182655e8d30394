"""The one exception handler: every failure becomes OpenAI's error JSON.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": null}}

Routes never catch-and-format errors themselves: they raise OssgateError subclasses (or let pydantic
and Starlette raise theirs) and this handler turns each into the status and body clients expect.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ossgate.errors import OssgateError, Overloaded

log = logging.getLogger(__name__)

_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({first.get('ctx', {}).get('error', first['msg'])})", None
    if not loc:
        return f"the request body is invalid: {first['msg']}", None
    param = loc[0] + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    msg = first["msg"].removeprefix("Value error, ")
    if first.get("type") == "missing":
        return f"{param} is required", param
    if msg.startswith(f"{loc[0]}:"):  # our model validators already name the field
        return msg, loc[0]
    return f"{param}: {msg}", param


def to_response(exc: Exception) -> JSONResponse:
    """The JSON response for any exception (also used for errors inside an SSE stream)."""
    headers = {}
    if isinstance(exc, OssgateError):
        status, body = exc.status, error_body(exc.message, exc.type, exc.param, exc.code)
        if isinstance(exc, Overloaded):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    elif isinstance(exc, RequestValidationError):
        message, param = _validation_message(exc)
        status, body = 400, error_body(message, "invalid_request_error", param)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        body = error_body(str(exc.detail), _HTTP_TYPES.get(status, "invalid_request_error"))
    else:
        log.error("unhandled error", exc_info=exc)
        status, body = 500, error_body(f"internal server error ({type(exc).__name__})", "server_error")
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return to_response(exc)

    for cls in (OssgateError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(cls, handle)
