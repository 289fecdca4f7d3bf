"""A TCP proxy on loopback that tests can cut (connections reset) or freeze (half-open link)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to a target; runs its own loop on a thread."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 6379) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._blocked = False
        self._frozen: set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True, name="test-proxy")
        self._thread.start()
        self._started.wait(5)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

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
            if self._server is not None:
                self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blocked:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._conns.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, writer),
                                 self._pipe(up_reader, writer, writer))
        finally:
            self._conns.discard(pair)
            for w in pair:
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if client in self._frozen:
                    continue  # a black hole: the bytes vanish, the sockets stay open
                writer.write(data)
                await writer.drain()
        writer.close()

    def _call(self, func: object) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                func()  # type: ignore[operator]
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    def cut(self) -> None:
        """Reset every open connection; new connections are refused until `restore`."""

        def go() -> None:
            self._blocked = True
            for client, upstream in list(self._conns):
                client.transport.abort()
                upstream.transport.abort()

        self._call(go)

    def restore(self) -> None:
        def go() -> None:
            self._blocked = False
            self._frozen.clear()

        self._call(go)

    def freeze(self) -> None:
        """Silently drop all traffic of the open connections (a half-open link)."""
        self._call(lambda: self._frozen.update(c for c, _ in self._conns))

    @property
    def connections(self) -> int:
        return len(self._conns)

    def close(self) -> None:
        def go() -> None:
            if self._server is not None:
                self._server.close()
            for client, upstream in list(self._conns):
                client.transport.abort()
                upstream.transport.abort()

        self._call(go)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@contextlib.contextmanager
def proxy_to_redis(port: int = 6379) -> Iterator[Proxy]:
    proxy = Proxy(target_port=port)
    try:
        yield proxy
    finally:
        proxy.close()
