"""Subscribers and publishers on the in-process memory transport, with fast timings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hotreload.config import HotReloadConfig, build_config
from hotreload.publisher import AsyncPublisher
from hotreload.subscriber import AsyncSubscriber, Invalidation
from hotreload.transport import MemoryServer, MemoryTransport

FAST = {"heartbeat_interval": 0.2, "heartbeat_timeout": 0.6, "version_check_interval": 0.5,
        "reconnect_backoff_max": 0.1, "command_timeout": 0.5}
#: heartbeat_interval + heartbeat_timeout + the reader's poll, plus scheduling slack
DETECTION_BOUND = 0.2 + 0.6 + 0.25 + 0.5


def config(**extra: Any) -> HotReloadConfig:
    data: dict[str, Any] = {"redis": {"url": "redis://memory/0"}, "namespace": "app",
                            "subscriber": dict(FAST)}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return build_config(data)


class Recorder:
    """A cache hook that records what it is told."""

    def __init__(self) -> None:
        self.events: list[Invalidation] = []
        self.trusted: list[bool] = []

    def invalidate(self, event: Invalidation) -> None:
        self.events.append(event)

    def set_trusted(self, trusted: bool) -> None:
        self.trusted.append(trusted)


class Pods:
    """Makes publishers and subscribers on one memory server (closed at the end)."""

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self.opened: list[Any] = []

    def transport(self) -> MemoryTransport:
        return MemoryTransport(self.server, prefix="hotreload")

    def publisher(self, cfg: HotReloadConfig | None = None, **kw: Any) -> AsyncPublisher:
        pub = AsyncPublisher(cfg or config(), transport=self.transport(), **kw)
        self.opened.append(pub)
        return pub

    async def subscriber(self, cfg: HotReloadConfig | None = None, *, start: bool = True,
                         **kw: Any) -> AsyncSubscriber[Any]:
        sub: AsyncSubscriber[Any] = AsyncSubscriber(cfg or config(), transport=self.transport(),
                                                    **kw)
        self.opened.append(sub)
        if start:
            await sub.start(timeout=5)
        return sub

    async def close(self) -> None:
        self.server.thaw()
        for obj in reversed(self.opened):
            await obj.aclose()


@pytest.fixture
def server() -> MemoryServer:
    return MemoryServer()


@pytest.fixture
async def pods(server: MemoryServer) -> AsyncIterator[Pods]:
    made = Pods(server)
    yield made
    await made.close()


async def eventually(cond: Callable[[], object], timeout: float = 5.0,
                     what: str = "condition") -> None:
    from tests.conftest import await_until

    await await_until(cond, timeout=timeout, what=what)
