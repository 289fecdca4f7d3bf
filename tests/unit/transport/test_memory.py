"""The memory server's test controls: freeze/thaw, fail_next, cut, lose_data; threads."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest

from hotreload.errors import BackendError
from hotreload.transport import MemoryServer, MemoryTransport
from tests.conftest import await_until
from tests.transport_contract import NS, create, expect, step


@pytest.fixture
def server() -> MemoryServer:
    return MemoryServer()


async def test_freeze_hangs_calls_and_silences_subscriptions(server: MemoryServer) -> None:
    t = server.transport()
    sub = t.subscription(NS)
    await expect(sub, "subscribed")
    await create(t)
    server.freeze()
    assert await sub.next(0.05) is None  # e1 is "in the network"
    task = asyncio.create_task(step(t, 1))
    done, _ = await asyncio.wait({task}, timeout=0.05)
    assert not done
    await sub.ping()  # sent; its reply waits too
    server.thaw()
    assert (await task).ok
    await expect(sub, "config", b"e1")
    await expect(sub, "pong")
    await expect(sub, "config", b"e2")
    await sub.aclose()


async def test_a_frozen_server_does_not_confirm_a_resubscription(server: MemoryServer) -> None:
    sub = server.transport().subscription(NS)
    server.freeze()
    assert await sub.next(0.05) is None
    server.thaw()
    await expect(sub, "subscribed")


async def test_fail_next_fails_calls_and_connects(server: MemoryServer) -> None:
    t = server.transport()
    server.fail_next(2)
    with pytest.raises(BackendError, match="connection refused"):
        await t.load(NS, max_tail=10)
    with pytest.raises(BackendError, match="connection refused"):
        await create(t)
    assert (await create(t)).ok
    sub = t.subscription(NS)
    server.fail_next()
    with pytest.raises(BackendError, match="connection refused"):
        await sub.next(1)
    assert not sub.connected
    await expect(sub, "subscribed")
    server.fail_next()
    with pytest.raises(BackendError):
        await sub.ping()


async def test_lose_data_forgets_keys_and_cuts_every_link(server: MemoryServer) -> None:
    t = server.transport()
    subs = [t.subscription(NS), t.subscription("other")]
    for sub in subs:
        await expect(sub, "subscribed")
    await create(t)
    server.lose_data()
    assert server.keys() == []
    assert (await t.load(NS, max_tail=10)).meta == {}
    for sub in subs:
        assert not sub.connected
        await expect(sub, "subscribed")  # e1 was lost with the link
    assert (await create(t)).receivers == 1
    await expect(subs[0], "config", b"e1")


async def test_cut_wakes_a_waiting_reader(server: MemoryServer) -> None:
    sub = server.transport().subscription(NS)
    await expect(sub, "subscribed")
    reader = asyncio.create_task(sub.next(5))
    await await_until(lambda: sub._waiter is not None, what="the reader to wait")
    server.cut(sub)
    msg = await reader
    assert msg is not None and msg.kind == "subscribed"


async def test_every_call_is_one_round_trip(server: MemoryServer) -> None:
    t = server.transport()
    await create(t)
    before = server.calls
    await step(t, 1)
    await t.load(NS, max_tail=10)
    await t.write_presence(NS, "i", b"{}", 10)
    assert server.calls - before == 3


async def test_a_closed_transport_refuses_calls(server: MemoryServer) -> None:
    t = server.transport()
    await t.aclose()
    with pytest.raises(BackendError, match="closed"):
        await t.ping()


async def test_transports_on_other_threads_share_the_server(server: MemoryServer) -> None:
    got: queue.Queue[bytes | None] = queue.Queue()
    subscribed = threading.Event()

    def listen() -> None:
        async def main() -> None:
            sub = MemoryTransport(server).subscription(NS)
            await expect(sub, "subscribed")
            subscribed.set()
            msg = await sub.next(10)
            got.put(None if msg is None else msg.data)
            await sub.aclose()

        asyncio.run(main())

    thread = threading.Thread(target=listen)
    thread.start()
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        await create(server.transport())
        assert await asyncio.to_thread(got.get, True, 10) == b"e1"
    finally:
        thread.join(10)
