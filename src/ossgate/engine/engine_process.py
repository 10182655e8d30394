"""The engine core in its own process, and the client the server talks to it through (after vLLM V1's
EngineCoreProc and AsyncLLM).

Why: on a model whose forward pass is Python-bound (nano on CPU) a step loop in a thread holds the GIL
most of the time, so the server's event loop (HTTP, JSON, harmony parsing) and the engine slow each other
down. In its own process the step loop has an interpreter to itself; only token ids cross over.

    server process                                   engine process (spawned)
    ProcessEngine ── ("add" | "abort" | "score" | "shutdown") ──> input thread -> inbox -> step loop
                  <── one ("step", events, counters) per engine step ── step loop

Wire format: multiprocessing.Connection framing (4-byte big-endian length, then a pickle) over two pipes.
The engine process uses Connection objects (blocking; its input thread waits on one); the server side drives
its ends from the event loop with asyncio pipe transports, so no server thread waits on the engine and a
step's tokens cost one wake-up of the event loop, whatever the batch size.

Lifetime: the engine process ends when told to (its running requests end with finish_reason 'abort', as
in thread mode), when the server's end of the pipe closes (the server exited or was killed: no orphans),
or when its parent pid changes (belt and braces). It ignores SIGINT/SIGTERM sent to the process group, so
a Ctrl-C or `systemctl stop` lets the server drain its streams first. If it dies, every open stream and
every new request fails with EngineUnavailable (503) instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ossgate.engine.async_engine import (
    EngineStats,
    PromptScore,
    TokenRate,
    TokenStream,
    core_counters,
    fail_running,
    iterate,
    score_prompt,
)
from ossgate.engine.core import EngineConfig
from ossgate.engine.kv_cache import KVBudget
from ossgate.engine.request import Request, TokenEvent
from ossgate.engine.sampling import SamplingParams
from ossgate.engine.scheduler import Scheduler, SchedulerConfig
from ossgate.errors import EngineUnavailable

log = logging.getLogger(__name__)

PARENT_CHECK_S = 0.5  # an idle engine looks at its parent pid this often
SHUTDOWN_WAIT_S = 30.0  # how long close() waits for the engine to end its requests and exit
_HEADER = struct.Struct("!i")  # multiprocessing.Connection's frame header


@dataclass(frozen=True)
class EngineSpec:
    """What the engine process needs to build its engine. Picklable: the model is loaded there, not sent."""

    checkpoint: Path
    dtype: str = "bfloat16"  # bfloat16 | float32
    device: str = "cpu"
    config: EngineConfig = field(default_factory=EngineConfig)
    torch_threads: int | None = None  # None: PyTorch's default
    log_level: int = logging.WARNING


# ---- the engine process ------------------------------------------------------------------------


def main() -> None:
    """Entry point of the engine process: `python -c '...main()' INBOX_FD OUTBOX_FD PARENT_PID`."""
    inbox_fd, outbox_fd, parent_pid = (int(a) for a in sys.argv[1:4])
    # The server decides when the engine stops: a Ctrl-C / SIGTERM to the whole process group must not kill
    # the engine under streams the server is still draining. The server's exit closes our input pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox, outbox = Connection(inbox_fd, writable=False), Connection(outbox_fd, readable=False)
    try:
        spec: EngineSpec = pickle.loads(inbox.recv_bytes())
    except EOFError:
        return  # the server went away before sending anything
    logging.basicConfig(level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s [engine]: %(message)s")
    try:
        core = _build_core(spec)
    except Exception as e:  # reported to the server, which refuses to start with this message
        log.exception("engine failed to start")
        _send(outbox, ("fatal", f"{type(e).__name__}: {e}"))
        return
    ready = {
        "model_config": core.model.config,
        "dtype_bytes": core.budget.dtype_bytes,
        "kv_budget_bytes": core.budget.limit_bytes,
        "max_context": core.scheduler.config.max_context,
    }
    try:
        _send(outbox, ("ready", ready))
    except BrokenPipeError:
        return
    EngineLoop(core, inbox, outbox, parent_pid).run()


def _build_core(spec: EngineSpec):
    import torch  # noqa: PLC0415 - the engine process only

    from ossgate.engine.core import EngineCore  # noqa: PLC0415
    from ossgate.model.checkpoint import load_model  # noqa: PLC0415

    if spec.torch_threads is not None:
        torch.set_num_threads(spec.torch_threads)
    dtype = torch.bfloat16 if spec.dtype == "bfloat16" else torch.float32
    model = load_model(spec.checkpoint, dtype, spec.device, False)
    model_context = model.config.max_position_embeddings
    context = min(spec.config.max_context or model_context, model_context)  # never past what the model knows
    return EngineCore(model, replace(spec.config, max_context=context))


def _send(conn: Connection, message: tuple) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _event_tuple(e: TokenEvent) -> tuple:
    return (e.request_id, e.token, e.logprob, e.top_logprobs, e.time, e.finish_reason)


class EngineLoop:
    """The step loop of the engine process: drain the inbox, step, send the step's events in one message."""

    def __init__(self, core, inbox_conn: Connection, outbox_conn: Connection, parent_pid: int) -> None:
        self.core = core
        self.outbox = outbox_conn
        self.inbox_conn = inbox_conn
        self.parent_pid = parent_pid
        self.inbox: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.stop = False

    def _read_inbox(self) -> None:
        """Input thread: waits on the pipe (without the GIL) so the step loop never blocks on I/O."""
        try:
            while True:
                self.inbox.put(pickle.loads(self.inbox_conn.recv_bytes()))
                self.wake.set()
        except (EOFError, OSError):  # the server closed its end or died
            self.inbox.put(("gone",))
            self.wake.set()

    def run(self) -> None:
        threading.Thread(target=self._read_inbox, name="ossgate-engine-input", daemon=True).start()
        try:
            events: list[TokenEvent] = []
            while not self.stop:
                events = self._drain()
                if self.stop:
                    break
                if not self.core.has_work:
                    if events:
                        self._publish(events)
                    if not self.wake.wait(timeout=PARENT_CHECK_S) and os.getppid() != self.parent_pid:
                        log.warning("the server process is gone; engine exiting")
                        return
                    self.wake.clear()
                    continue
                try:
                    events += self.core.step()
                except Exception:  # a bug must end the affected requests, not hang their clients
                    log.exception("engine step failed; ending running requests")
                    events += fail_running(self.core)
                self._publish(events)
                events = []
            self._publish(events + self._abort_all())  # aborts drained with the shutdown, then everything left
            _send(self.outbox, ("bye",))
        except (BrokenPipeError, ConnectionResetError):  # the server is gone: nobody to tell
            return

    def _drain(self) -> list[TokenEvent]:
        events: list[TokenEvent] = []
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return events
            kind = message[0]
            if kind == "add":
                _, request_id, prompt, params = message
                self.core.scheduler.waiting.append(Request(request_id, prompt, params))  # validated by the client
            elif kind == "abort":
                if self.core.abort(message[1]) is not None:
                    events.append(TokenEvent(message[1], -1, 0.0, [], time.perf_counter(), finish_reason="abort"))
            elif kind == "score":
                _, call_id, prompt, top_n = message
                try:
                    _send(self.outbox, ("result", call_id, score_prompt(self.core, prompt, top_n), None))
                except Exception as e:  # the caller gets the error, the engine keeps serving
                    log.exception("scoring a prompt failed")
                    _send(self.outbox, ("result", call_id, None, f"{type(e).__name__}: {e}"))
            elif kind == "shutdown":
                self.stop = True
            elif kind == "gone":
                log.info("the server closed the engine's pipe; engine exiting")
                raise BrokenPipeError

    def _abort_all(self) -> list[TokenEvent]:
        now = time.perf_counter()
        events = []
        for r in list(self.core.scheduler.running) + list(self.core.scheduler.waiting):
            self.core.abort(r.request_id)
            events.append(TokenEvent(r.request_id, -1, 0.0, [], now, finish_reason="abort"))
        return events

    def _publish(self, events: list[TokenEvent]) -> None:
        _send(self.outbox, ("step", [_event_tuple(e) for e in events], core_counters(self.core)))


# ---- the client, in the server process ---------------------------------------------------------


class _FrameReader(asyncio.Protocol):
    """Splits the engine's pipe into messages and hands each to the client, on the event loop."""

    def __init__(self, client: ProcessEngine) -> None:
        self.client = client
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        messages, start = [], 0
        with memoryview(self.buffer) as view:
            while len(view) - start >= _HEADER.size:
                (size,) = _HEADER.unpack_from(view, start)
                end = start + _HEADER.size + size
                if len(view) < end:
                    break
                messages.append(pickle.loads(view[start + _HEADER.size : end]))
                start = end
        del self.buffer[:start]
        for message in messages:
            self.client._on_message(message)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_engine_lost()


class ProcessEngine:
    """The engine in its own process, with AsyncEngine's interface: generate, abort, stats, score.

    `await start()` spawns the process and returns once its model is loaded; `await aclose()` ends it.
    Every method is for the event loop's thread, except `abort`, which any thread may call.
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen | None = None
        self.model_config: Any = None
        self.budget: KVBudget | None = None
        self._validator: Scheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._streams: dict[str, TokenStream] = {}
        self._calls: dict[str, asyncio.Future] = {}
        self._counters: tuple = (0, 0, 0.0, 0, 0, 0, 0)
        self._rate = TokenRate()
        self._ready: asyncio.Future | None = None
        self._closed: asyncio.Future | None = None  # set when the engine's pipe closes
        self._closing = False
        self._error: EngineUnavailable | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self._error is None and not self._closing

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the engine process and wait until its model is loaded (raises what it failed with)."""
        loop = self._loop = asyncio.get_running_loop()
        inbox_r, inbox_w = os.pipe()
        outbox_r, outbox_w = os.pipe()
        # A fresh interpreter (like multiprocessing's spawn, without re-importing the caller's __main__): never
        # fork a process that has threads and a torch runtime. Only the two pipe ends are passed to it.
        code = "from ossgate.engine.engine_process import main; main()"
        args = [sys.executable, "-c", code, str(inbox_r), str(outbox_w), str(os.getpid())]
        self.process = subprocess.Popen(args, pass_fds=(inbox_r, outbox_w), stdin=subprocess.DEVNULL)
        os.close(inbox_r)  # the child's ends: keeping them open here would hide the child's death from us
        os.close(outbox_w)
        self._ready, self._closed = loop.create_future(), loop.create_future()
        # the transports own (and close) these files
        self._reader, _ = await loop.connect_read_pipe(lambda: _FrameReader(self), open(outbox_r, "rb", 0))  # noqa: SIM115
        self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, open(inbox_w, "wb", 0))  # noqa: SIM115
        self._write(self.spec)
        try:
            info = await self._ready
        except BaseException:
            await self._stop_process(kill=True)
            raise
        self.model_config = info["model_config"]
        self.budget = KVBudget(self.model_config, info["kv_budget_bytes"], info["dtype_bytes"])
        # validation only (fixed limits): the same checks and messages as the engine's own scheduler
        self._validator = Scheduler(SchedulerConfig(max_context=info["max_context"]), self.budget, make_cache=None)
        log.info("engine process %d ready", self.process.pid)

    async def aclose(self) -> None:
        """Stop the engine: running requests end with finish_reason 'abort'; then the process exits."""
        if self.process is None or self._closing:
            return
        self._closing = True
        if self._error is None and self._writer is not None and not self._writer.is_closing():
            self._write(("shutdown",))
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), SHUTDOWN_WAIT_S)
            except TimeoutError:
                log.warning("engine process %d did not stop in %.0f s; killing it", self.process.pid, SHUTDOWN_WAIT_S)
        await self._stop_process(kill=False)

    async def _stop_process(self, kill: bool) -> None:
        process = self.process
        if kill:
            process.kill()
        try:
            await asyncio.to_thread(process.wait, 5)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 5)
        if self._writer is not None:
            self._writer.close()
        if self._reader is not None:
            self._reader.close()
        self._fail_all(EngineUnavailable("the engine was shut down"))

    def shutdown(self) -> None:
        """Last resort, from any thread, no event loop needed: kill the engine process now."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    # ---- messages from the engine -------------------------------------------------------------

    def _on_message(self, message: tuple) -> None:
        kind = message[0]
        if kind == "step":
            _, events, self._counters = message
            generated = 0
            streams = self._streams
            for request_id, token, logprob, top, t, reason in events:
                if token >= 0:
                    generated += 1
                stream = streams.get(request_id)
                if stream is None:
                    continue
                if reason is not None:
                    del streams[request_id]
                stream.push(TokenEvent(request_id, token, logprob, top, t, reason))
            if events:
                self._rate.add(time.perf_counter(), generated)
        elif kind == "result":
            _, call_id, value, error = message
            future = self._calls.pop(call_id, None)
            if future is not None and not future.done():
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(EngineUnavailable(f"the engine could not score the prompt: {error}"))
        elif kind == "ready":
            self._ready.set_result(message[1])
        elif kind == "fatal":
            self._ready.set_exception(EngineUnavailable(f"the engine process failed to start: {message[1]}"))
        elif kind == "bye":
            pass  # the pipe closes next

    def _on_engine_lost(self) -> None:
        """The engine's pipe closed: after a shutdown, expected; otherwise the process died."""
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(EngineUnavailable(self._death_message("while loading the model")))
            return
        if self._closing:
            self._fail_all(EngineUnavailable("the engine was shut down"))
            return
        error = EngineUnavailable(self._death_message("unexpectedly") + "; restart the server")
        log.error("%s", error.message)
        self._error = error
        self._fail_all(error)

    def _death_message(self, when: str) -> str:
        code = None
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.5)  # the pipe closes a moment before the process can be reaped
            code = self.process.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        pid = self.process.pid if self.process is not None else "?"
        return f"the engine process ({pid}) exited {when} ({how})"

    def _fail_all(self, error: EngineUnavailable) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.fail(error)
        calls, self._calls = self._calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(error)

    # ---- requests -----------------------------------------------------------------------------

    def _write(self, message: Any) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_HEADER.pack(len(payload)) + payload)  # buffered by the transport: never blocks

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing:
            raise EngineUnavailable("the engine is shutting down")
        assert self._validator is not None, "ProcessEngine.start() was not awaited"

    def validate(self, request: Request) -> None:
        self._check()
        self._validator.validate(request)

    async def generate(
        self, prompt: list[int], params: SamplingParams, request_id: str | None = None
    ) -> AsyncIterator[TokenEvent]:
        """As AsyncEngine.generate. Raises EngineUnavailable if the engine process is gone."""
        self._check()
        request_id = request_id or uuid.uuid4().hex
        prompt = list(prompt)
        self._validator.validate(Request(request_id, prompt, params))
        stream = TokenStream(request_id, self._loop)
        self._streams[request_id] = stream
        self._write(("add", request_id, prompt, params))
        return iterate(stream, self.abort)

    def abort(self, request_id: str) -> None:
        """Any thread: the request ends before the engine's next step. Never blocks."""
        if self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._abort(request_id)
        else:
            self._loop.call_soon_threadsafe(self._abort, request_id)

    def _abort(self, request_id: str) -> None:
        if self._error is None and self._writer is not None and not self._writer.is_closing():
            self._write(("abort", request_id))

    async def score(self, prompt: list[int], top_n: int) -> PromptScore:
        """Prompt-token logprobs, computed in the engine process between two steps."""
        self._check()
        call_id = uuid.uuid4().hex
        future = self._calls[call_id] = self._loop.create_future()
        self._write(("score", call_id, list(prompt), top_n))
        return await future

    def stats(self) -> EngineStats:
        running, waiting, kv, hits, hit_tokens, generated, prefilled = self._counters
        return EngineStats(running, waiting, kv, self._rate.value(), hits, hit_tokens, generated, prefilled)
