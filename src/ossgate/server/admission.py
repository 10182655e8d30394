"""The bounded admission queue in front of each backend.

A backend runs `max_running` requests at once; up to `queue_size` more may wait (inside the engine's
own FIFO). Beyond that a request is refused at once with 429 and a Retry-After estimated from how long
requests have recently taken — better than letting clients pile up until they time out.
"""

from __future__ import annotations

import math
import time

from ossgate.errors import OssgateError, Overloaded


class ShuttingDown(OssgateError):
    status = 503
    type = "server_error"


class Ticket:
    """A request's place in the gate, held for its whole life (streaming included)."""

    def __init__(self, gate: AdmissionGate, slots: int) -> None:
        self.gate, self.slots = gate, slots
        self.start = time.monotonic()
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._release(self)


class AdmissionGate:
    def __init__(self, model: str, max_running: int, queue_size: int) -> None:
        self.model = model
        self.max_running = max_running
        self.limit = max_running + queue_size
        self.in_flight = 0
        self.rejected = 0
        self.draining = False
        self._mean_s = 1.0  # moving average of a request's time in the gate

    def retry_after(self) -> float:
        """Seconds until a place is likely free: the queue ahead, drained max_running at a time."""
        ahead = max(1, self.in_flight - self.max_running + 1)
        return float(max(1, min(60, math.ceil(ahead / self.max_running * self._mean_s))))

    def acquire(self, slots: int = 1) -> Ticket:
        """Take `slots` places (one per generated choice), or raise Overloaded / ShuttingDown."""
        if self.draining:
            raise ShuttingDown("the server is shutting down; retry in a moment", code="shutting_down")
        if self.in_flight + slots > self.limit:
            self.rejected += 1
            raise Overloaded(
                f"model {self.model!r} is at capacity ({self.in_flight} requests running or queued, "
                f"limit {self.limit}); retry later",
                retry_after=self.retry_after(),
            )
        self.in_flight += slots
        return Ticket(self, slots)

    def _release(self, ticket: Ticket) -> None:
        self.in_flight -= ticket.slots
        self._mean_s = 0.9 * self._mean_s + 0.1 * (time.monotonic() - ticket.start)
