"""A loopback TCP proxy whose links a test or the soak can break on purpose.

One proxy stands between a client (a subscriber's process) and a server (Redis). Faults:

* `cut`: reset every open link (RST); new connections are refused until `restore`;
* `freeze`: every link, open or new, stops moving bytes (the kernel buffers fill, nothing is
  lost); `restore` lets them flow again, late: a paused network, a stopped NAT box;
* `blackhole`: every link, open or new, silently drops what it carries (connections are still
  accepted); `restore` makes new links work, the black-holed ones stay silent until their
  client closes them: a NAT or firewall that forgot the flows;
* `arm(pattern, fault)`: apply ``fault`` the moment a client sends bytes containing ``pattern``
  (that chunk included): a fault at an exact phase, e.g. while a given command is in flight.

It runs its own event loop on a daemon thread, so any thread (or an asyncio test) drives it
with plain calls. `seen(pattern)` tells when the clients last sent a pattern (a `wait_seen`
helps tests line a fault up with a phase).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

Fault = Literal["cut", "freeze", "blackhole"]
_CHUNK: Final = 65536


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    dropping: bool = False


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; see the module docstring for the faults."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 6379, *,
                 name: str = "fault-proxy", watch: tuple[bytes, ...] = ()) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Fault | None = None
        self.faults: dict[str, int] = {"cut": 0, "freeze": 0, "blackhole": 0}
        self.fault_at = 0.0  # time.monotonic() of the last fault applied
        self._watch = {p: 0.0 for p in watch}
        self._armed: list[tuple[bytes, Fault]] = []
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True, name=name)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the proxy did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def links(self) -> int:
        return len(self._links)

    # ------------------------------------------------------------------ faults

    def cut(self) -> None:
        self._call(lambda: self._apply("cut"))

    def freeze(self) -> None:
        self._call(lambda: self._apply("freeze"))

    def blackhole(self) -> None:
        self._call(lambda: self._apply("blackhole"))

    def restore(self) -> None:
        """End the fault: new links work; frozen links flow again; black-holed ones stay so.
        Armed faults stay armed (arm, then restore: the fault waits for its pattern)."""

        def go() -> None:
            self.mode = None
            for link in self._links:
                if not link.dropping:
                    link.flowing.set()

        self._call(go)

    def arm(self, pattern: bytes, fault: Fault) -> None:
        """Apply ``fault`` when a client next sends ``pattern`` (before forwarding it)."""
        self._call(lambda: self._armed.append((pattern, fault)))

    def disarm(self) -> None:
        self._call(self._armed.clear)

    @property
    def armed(self) -> bool:
        return bool(self._armed)

    def seen(self, pattern: bytes) -> float:
        """`time.monotonic()` when a client last sent ``pattern`` (a ``watch`` one), or 0."""
        return self._watch.get(pattern, 0.0)

    def wait_seen(self, pattern: bytes, after: float, timeout: float = 30.0) -> float:
        """Block until a client sends ``pattern`` after ``after``; return when it did."""
        deadline = time.monotonic() + timeout
        while self._watch.get(pattern, 0.0) <= after:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} seen within {timeout}s")
            time.sleep(0.002)
        return self._watch[pattern]

    def close(self) -> None:
        def go() -> None:
            if self._server is not None:
                self._server.close()
            for link in list(self._links):
                _abort(link)

        if self._thread.is_alive():
            self._call(go)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # ------------------------------------------------------------------ the loop

    def _apply(self, fault: Fault) -> None:
        self.fault_at = time.monotonic()
        self.faults[fault] += 1
        self.mode = fault
        for link in list(self._links):
            if fault == "cut":
                _abort(link)
            elif fault == "freeze":
                link.flowing.clear()
            else:
                link.dropping = True
                link.flowing.set()

    def _call(self, func: object) -> None:
        done = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                func()  # type: ignore[operator]
            except BaseException as exc:  # handed to the caller
                errors.append(exc)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise RuntimeError("the proxy's loop did not answer")
        if errors:
            raise errors[0]

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        link = _Link(writer)
        if self.mode == "blackhole":
            link.dropping = True
        if self.mode != "freeze":
            link.flowing.set()
        self._links.add(link)
        try:
            if link.dropping:
                await self._swallow(reader)
                return
            try:
                up_reader, link.upstream = await asyncio.open_connection(*self.target)
            except OSError:
                return  # the server is down: the client sees the connection close
            await asyncio.gather(self._pipe(link, reader, link.upstream, upward=True),
                                 self._pipe(link, up_reader, writer, upward=False))
        finally:
            self._links.discard(link)
            _abort(link)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(_CHUNK):
                pass

    async def _pipe(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, upward: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                await link.flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if upward:
                    self._inspect(data)
                await link.flowing.wait()  # a freeze while the chunk was read holds it
                if link.dropping:
                    continue
                writer.write(data)
                await writer.drain()
        _abort(link)

    def _inspect(self, data: bytes) -> None:
        if self._watch:
            now = time.monotonic()
            for pattern in self._watch:
                if pattern in data:
                    self._watch[pattern] = now
        for i, (pattern, fault) in enumerate(self._armed):
            if pattern in data:
                del self._armed[i]
                self._apply(fault)
                return


def _abort(link: _Link) -> None:
    link.flowing.set()  # wake the pipes so they end
    for w in (link.client, link.upstream):
        if w is not None:
            w.transport.abort()


@contextlib.contextmanager
def fault_proxy(target_port: int = 6379, *, watch: tuple[bytes, ...] = ()
                ) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target_port=target_port, watch=watch)
    try:
        yield proxy
    finally:
        proxy.close()
