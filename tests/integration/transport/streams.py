"""A stream of commits and the subscriptions that follow it, for failure tests on a transport.

A `Writer` commits version after version of one namespace (its one leaf ``v`` holds the
version) and keeps going through failures as a publisher does: a `BackendError` is tried again
a moment later, and a lost race adopts the head's version. A `Reader` reads one subscription
as a subscriber does (a ping after a short silence) and records what it yields, with the time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from hotreload.errors import BackendError
from hotreload.transport import Commit, Message, Subscription, Transport
from tests.transport_contract import checkpoint, head_fields

EPOCH = "1700000000000-0123456789abcdef"
#: Pause between commits, and before trying again after an error: a stream, not a flood.
PACE = 0.01
#: A reader pings after this much silence (the subscriber's heartbeat, shortened).
SILENCE = 0.2


def event(ns: str, version: int) -> bytes:
    return f"{ns}:{version}".encode()


def version_of(data: bytes) -> int:
    return int(data.rsplit(b":", 1)[1])


async def until(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait (yielding to the loop) until ``check()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


class Writer:
    """Commits one namespace's versions, one after the other, until stopped."""

    def __init__(self, transport: Transport, ns: str, *, pace: float = PACE) -> None:
        self.t = transport
        self.ns = ns
        self.pace = pace
        self.version = 0
        self.errors = 0
        self.committed: list[tuple[float, int]] = []  # (time, version) of each commit that won
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def create(self) -> None:
        token = await self.t.head_token(self.ns)
        result = await self.t.commit(self.ns, Commit(
            "new", token, head_fields(EPOCH), {"v": "1"}, (), event(self.ns, 1), 1, 1000,
            checkpoint=checkpoint(EPOCH)))
        assert result.ok, result
        self.version = 1
        self.committed.append((time.monotonic(), 1))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            new = self.version + 1
            try:
                result = await self.t.commit(self.ns, Commit(
                    "next", (EPOCH, str(self.version)), {"checksum": f"c{new}"},
                    {"v": str(new)}, (), event(self.ns, new), new, 1000))
            except BackendError:
                self.errors += 1
                await asyncio.sleep(self.pace)
                continue
            if result.ok:
                self.version = new
                self.committed.append((time.monotonic(), new))
            else:  # lost race (with itself: a commit that failed after it ran) or lost data
                assert result.epoch == EPOCH and result.version is not None, (
                    f"{self.ns} at v{self.version}: {result} ({self.t.describe()})")
                self.version = result.version
            await asyncio.sleep(self.pace)

    def commits_since(self, moment: float) -> int:
        return sum(1 for at, _ in self.committed if at > moment)

    async def stop(self) -> int:
        """Stop after the commit in flight; returns the last version committed."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.version


@dataclass
class Reader:
    """Reads one subscription until stopped, recording ``(time, message)``."""

    sub: Subscription
    ns: str
    got: list[tuple[float, Message]] = field(default_factory=list)
    errors: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = await self.sub.next(SILENCE)
                if msg is None:
                    await self.sub.ping()
                    continue
            except BackendError:
                self.errors += 1
                await asyncio.sleep(PACE)
                continue
            self.got.append((time.monotonic(), msg))

    def subscribed_after(self, moment: float) -> bool:
        return any(m.kind == "subscribed" and at > moment for at, m in self.got)

    def resubscriptions(self) -> int:
        """``subscribed`` messages after the first."""
        return sum(1 for _, m in self.got if m.kind == "subscribed") - 1

    def versions(self) -> list[int]:
        return [version_of(m.data) for _, m in self.got if m.kind == "config"]

    def has(self, version: int) -> bool:
        return version in self.versions()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.sub.aclose()


async def subscribed(transport: Transport, ns: str) -> Reader:
    """A started reader of a new subscription, once it is subscribed."""
    reader = Reader(transport.subscription(ns), ns)
    reader.start()
    await until("the subscription to be subscribed",
                lambda: any(m.kind == "subscribed" for _, m in reader.got))
    return reader
