"""`SentinelTransport` against a real master, replica and three sentinels going through a
planned failover (SENTINEL FAILOVER) and the master's death (kill -9)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from hotreload.config import build_config
from hotreload.errors import BackendError
from hotreload.transport import Commit, open_transport
from hotreload.transport.base import status_key
from hotreload.transport.sentinel import SentinelTransport
from hotreload.wire.names import keys_for
from tests.conftest import unique
from tests.integration.cluster_servers import MASTER, SentinelServers, Server
from tests.integration.servers import free_port
from tests.integration.transport.streams import Reader, Writer, subscribed, until
from tests.transport_contract import create, step

PREFIX = "hr"
HOLD_MS = 4000  # the old master stays a master with its clients this long after a failover
GUARD_HOLD_MS = 1500


def transport(deployment: SentinelServers, resp: int = 3) -> SentinelTransport:
    config = build_config({"prefix": PREFIX, "redis": {
        "protocol": resp, "sentinel": {"master": MASTER, "nodes": deployment.nodes}}})
    t = open_transport(config)
    assert isinstance(t, SentinelTransport)
    return t


@pytest.fixture
async def transports(redis_sentinel: SentinelServers) -> AsyncIterator[
        tuple[SentinelTransport, SentinelTransport]]:
    pair = transport(redis_sentinel, 3), transport(redis_sentinel, 2)
    try:
        yield pair
    finally:
        for t in pair:
            await t.aclose()


def head_version(server: Server, ns: str) -> bytes | None:
    value = server.call("HGET", keys_for(ns, PREFIX).meta, "version")
    return value if value is None else bytes(value)


async def follow_through(deployment: SentinelServers,
                         ts: tuple[SentinelTransport, SentinelTransport], ns: str,
                         failure: Callable[[], tuple[Server, Server]], *,
                         within: float = 15.0) -> tuple[Writer, list[Reader], Server, Server]:
    """A stream of commits (from a transport of its own) and four subscriptions (two per
    transport of ``ts``) through ``failure`` (run in a thread): every subscription says
    ``subscribed`` again within ``within`` seconds and receives the commit that ends the
    stream, which the new master holds."""
    own = transport(deployment)
    writer = Writer(own, ns)
    readers: list[Reader] = []
    try:
        await writer.create()
        await asyncio.to_thread(deployment.wait_replicated)  # the stream's tail may be lost
        for t in (*ts, *ts):
            readers.append(await subscribed(t, ns))
        writer.start()
        try:
            await until("the stream to reach every subscription",
                        lambda: all(len(r.versions()) >= 3 for r in readers))
            before = time.monotonic()
            old, new = await asyncio.to_thread(failure)
            await until("every subscription to subscribe again",
                        lambda: all(r.subscribed_after(before) for r in readers), within)
            settled = time.monotonic()
            await until("commits after the failover",
                        lambda: writer.commits_since(settled) >= 3)
        finally:
            final = await writer.stop()
        await until(f"every subscription to receive version {final}",
                    lambda: all(r.has(final) for r in readers))
        assert head_version(new, ns) == str(final).encode()  # written where it lasts
        for t in ts:
            state = await t.load_leaves(ns, primary=True)
            assert state.leaves == {b"v": str(final).encode()}
    except BaseException:
        for reader in readers:
            await reader.stop()
        raise
    finally:
        await own.aclose()
    return writer, readers, old, new


async def test_a_sentinel_failover(redis_sentinel: SentinelServers,
                                   transports: tuple[SentinelTransport, SentinelTransport]) -> None:
    ns = unique("sfailover")
    # The old master stays a master with its clients for HOLD_MS (the sentinels cannot
    # reconfigure it before): the subscriptions must leave it by themselves, and the writer
    # must not write there although its connection to it is still open.
    _writer, readers, _old, new = await follow_through(
        redis_sentinel, transports, ns, lambda: redis_sentinel.failover(hold_ms=HOLD_MS),
        within=HOLD_MS / 1000 - 0.5)
    try:
        for reader in readers:
            conn = reader.sub._pubsub.connection  # type: ignore[attr-defined]
            assert conn is not None and int(conn.port) == new.port
    finally:
        for reader in readers:
            await reader.stop()


async def test_no_write_goes_to_the_old_master_once_the_sentinels_switched(
        redis_sentinel: SentinelServers) -> None:
    """After SENTINEL FAILOVER the old master stays a master (held here, as if the sentinels
    had not reconfigured it yet) and the transport still has a connection to it: the next
    commit asks the sentinels first and goes to the new master."""
    ns = unique("sguard")
    t = transport(redis_sentinel)
    try:
        assert (await create(t, ns=ns)).ok  # a pooled connection to the master, now idle
        await asyncio.to_thread(redis_sentinel.wait_replicated)
        old, new = await asyncio.to_thread(redis_sentinel.failover, hold_ms=GUARD_HOLD_MS)
        started = time.monotonic()
        result = await step(t, 1, ns=ns)
        assert time.monotonic() - started < GUARD_HOLD_MS / 2000  # it did not wait on the old
        assert result.ok
        assert head_version(new, ns) == b"2" and head_version(old, ns) == b"1"
    finally:
        await t.aclose()


async def test_a_write_through_a_connection_to_a_demoted_master_lands_on_the_new_one(
        redis_sentinel: SentinelServers) -> None:
    """A daemon status write (not preceded by a sentinel check) on an idle connection to the
    old master, demoted meanwhile: READONLY closes it and the write is retried on the master
    the sentinels name."""
    t = transport(redis_sentinel)
    try:
        await t.write_status("host:1", b"before", 30)  # a pooled connection, now idle
        old, new = await asyncio.to_thread(redis_sentinel.failover)
        await asyncio.to_thread(redis_sentinel.heal)  # the old master is a replica now
        assert old.info("replication")["role"] == "slave"
        await t.write_status("host:1", b"after", 30)
        assert new.call("GET", status_key(PREFIX, "host:1")) == b"after"
    finally:
        await t.aclose()


async def test_concurrent_discoveries_keep_every_sentinel(
        redis_sentinel: SentinelServers) -> None:
    """The first sentinel does not answer, so each discovery moves another one to the front:
    many at once (reconnects, write guards, subscription checks) must not lose a sentinel
    client (it would never be closed)."""
    config = build_config({"redis": {"sentinel": {
        "master": MASTER, "nodes": [f"127.0.0.1:{free_port()}", *redis_sentinel.nodes]}}})
    t = open_transport(config)
    assert isinstance(t, SentinelTransport)
    clients = list(t.sentinel.sentinels)
    try:
        await asyncio.gather(*(t.master_address() for _ in range(20)))
        assert sorted(map(id, t.sentinel.sentinels)) == sorted(map(id, clients))
    finally:
        await t.aclose()


async def test_killing_the_master(redis_sentinel: SentinelServers,
                                  transports: tuple[SentinelTransport, SentinelTransport]) -> None:
    ns = unique("skill")
    writer, readers, old, _new = await follow_through(redis_sentinel, transports, ns,
                                                      redis_sentinel.kill_master)
    try:
        assert not old.running and writer.errors > 0
        assert all(r.errors > 0 for r in readers)  # their master died under them
    finally:
        for reader in readers:
            await reader.stop()
    await asyncio.to_thread(redis_sentinel.heal)  # the killed server comes back as a replica
    state = await transports[0].load_leaves(ns)
    assert state.leaves == {b"v": str(writer.version).encode()}


async def test_a_server_that_is_not_a_master_is_refused(
        redis_sentinel: SentinelServers) -> None:
    """A sentinel's view may lag: a connection to a server that says it is a replica fails
    (and is not used for a write)."""
    t = transport(redis_sentinel)
    replica = redis_sentinel.replica()

    async def stale_view() -> tuple[str, int]:
        return "127.0.0.1", replica.port

    try:
        t.pool.get_master_address = stale_view  # type: ignore[method-assign]
        with pytest.raises(BackendError, match="is not a master"):
            await t.ping()
    finally:
        await t.aclose()


async def test_describe_and_errors_hold_no_password(redis_sentinel: SentinelServers) -> None:
    config = build_config({"redis": {"password": "s3cret", "sentinel": {
        "master": MASTER, "nodes": redis_sentinel.nodes, "sentinel_password": "t0p"}}})
    t = open_transport(config)
    try:
        text = t.describe()
        assert text.startswith("redis+sentinel://:***@") and MASTER in text
        assert "s3cret" not in text and "t0p" not in text
    finally:
        await t.aclose()
    nowhere = f"127.0.0.1:{free_port()}"
    config = build_config({"redis": {"password": "s3cret", "sentinel": {
        "master": MASTER, "nodes": [nowhere], "sentinel_password": "t0p"}}})
    t = open_transport(config)
    try:
        with pytest.raises(BackendError, match="No master found") as info:
            await t.ping()
        assert "s3cret" not in str(info.value) and "t0p" not in str(info.value)
        with pytest.raises(BackendError, match="asking the sentinels"):
            await t.commit("app", Commit("next", ("e", "1"), {}, {}, (), b"x", 2, 10))
    finally:
        await t.aclose()
