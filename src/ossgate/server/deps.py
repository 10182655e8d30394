"""FastAPI dependencies as Annotated aliases: `services: ServicesDep`, `key: KeyDep`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from ossgate.server.access import ApiKey
from ossgate.server.services import Services


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a thread hop on every request
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(services: ServicesDep, authorization: Annotated[str | None, Header()] = None) -> ApiKey:
    """The caller's API key (ANONYMOUS while no key exists). Raises AuthError (401)."""
    return services.keys.authenticate(authorization)


KeyDep = Annotated[ApiKey, Depends(authenticate)]
