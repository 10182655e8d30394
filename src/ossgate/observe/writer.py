"""TraceWriter: finished traces go into a bounded queue; one thread writes them to the store in batches.

The request path only does `queue.put_nowait` (microseconds). A full queue drops the trace and counts it
(`ossgate:trace_queue_dropped_total{reason="full"}`) instead of stalling the request. `close()` drains
every trace that was accepted before it returns, so a graceful shutdown (SIGTERM → lifespan end) loses
nothing that `submit` accepted. The same thread applies retention and feeds the OTLP exporter, so the
store sees one writer per process.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ossgate.observe.metrics import Metrics
from ossgate.observe.store import TraceStore

log = logging.getLogger(__name__)

_STOP = object()


class TraceWriter:
    """Batches `submit`ted items, turns each into a store record with `to_record`, and writes them."""

    def __init__(self, store: TraceStore, *, to_record: Callable[[Any], dict[str, Any]], metrics: Metrics,
                 queue_size: int, batch_size: int, flush_interval_s: float,
                 after_write: Callable[[list[dict[str, Any]]], None] | None = None,
                 prune: Callable[[], int] | None = None, prune_interval_s: float = 300.0,
                 write_retries: int = 3) -> None:
        self.store = store
        self._to_record = to_record
        self._metrics = metrics
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._after_write = after_write
        self._prune = prune
        self._prune_interval_s = prune_interval_s
        self._write_retries = write_retries
        self._closing = False
        self._lock = threading.Lock()
        self.accepted = 0  # traces `submit` took; all of them are written (or counted as write errors)
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="ossgate-trace-writer", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Queue a finished trace without blocking; False (and a counted drop) if full or closing."""
        if self._closing:
            self._drop("closed")
            return False
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._drop("full")
            return False
        with self._lock:
            self.accepted += 1
        self._metrics.trace_queue_depth.set(self._queue.qsize())
        return True

    def _drop(self, reason: str) -> None:
        with self._lock:
            self.dropped += 1
        self._metrics.trace_drops.labels(reason).inc()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far is written (for tests and the CLI, not the request path)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting, write everything accepted, stop the thread. Idempotent."""
        if self._closing:
            self._thread.join(timeout)
            return
        self._closing = True
        self._queue.put(_STOP)  # blocks only if full; the writer is draining it, so it frees up
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("trace writer did not finish within %ss; %s traces may be lost", timeout,
                      self._queue.qsize())

    def _run(self) -> None:
        next_prune = time.monotonic() + min(5.0, self._prune_interval_s) if self._prune else float("inf")
        stopping = False
        while not stopping:
            batch: list[Any] = []
            try:
                item = self._queue.get(timeout=self._flush_interval_s)
            except queue.Empty:
                item = None
            if item is _STOP:
                stopping = True
                self._queue.task_done()
            elif item is not None:
                batch.append(item)
                while len(batch) < self._batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        self._queue.task_done()
                        break
                    batch.append(item)
            if stopping:  # drain what slipped in behind the stop marker (submit raced with close)
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not _STOP:
                        batch.append(item)
                    else:
                        self._queue.task_done()
            for start in range(0, len(batch), self._batch_size):
                chunk = batch[start:start + self._batch_size]
                self._write(chunk)
                for _ in chunk:
                    self._queue.task_done()
            self._metrics.trace_queue_depth.set(self._queue.qsize())
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self._prune_interval_s
                try:
                    self._prune()
                except Exception:  # retention must never stop trace writing
                    log.exception("trace retention pruning failed")

    def _write(self, batch: list[Any]) -> None:
        records = [self._to_record(item) for item in batch]
        for attempt in range(self._write_retries + 1):
            try:
                self.store.write(records)
                break
            except Exception as e:  # the store may be briefly unreachable; retry, then count the loss
                if attempt == self._write_retries:
                    log.error("dropping %s traces: the trace store refused them %s times: %s", len(records),
                              attempt + 1, e)
                    self._metrics.trace_write_errors.inc()
                    return
                time.sleep(0.2 * 2 ** attempt)
        self.written += len(records)
        self._metrics.traces_written.inc(len(records))
        if self._after_write is not None:
            try:
                self._after_write(records)
            except Exception:  # export problems must not lose or stall stored traces
                log.exception("after-write hook (OTLP export) failed")
