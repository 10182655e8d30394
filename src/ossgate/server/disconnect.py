"""Ending a generation the moment its client goes away.

Starlette notices a closed connection only when it next writes, which may be long in coming (a
non-streamed request, or a stream whose reasoning is suppressed). The watcher waits on the ASGI
`http.disconnect` message instead and aborts the exchange's generations, which frees their engine
slots at once; the route's own loop then ends normally.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.requests import Request

log = logging.getLogger(__name__)


class DisconnectWatch:
    def __init__(self, request: Request, on_disconnect: Callable[[], None]) -> None:
        self.request = request
        self.on_disconnect = on_disconnect
        self.fired = False
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                self.fired = True
                log.info("client disconnected; aborting its generation")
                self.on_disconnect()
                return

    def stop(self) -> None:
        self._task.cancel()
