"""What only the Redis transport has: a real server dying and coming back, killed and half-open
links, script loading, old servers without EVALSHA_RO, socket options."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis

from hotreload.config import RedisSettings
from hotreload.errors import BackendError
from hotreload.transport import Message
from hotreload.transport.redis import RedisSubscription, RedisTransport
from hotreload.wire.names import keys_for
from tests.conftest import REDIS_URL, delete_keys, unique
from tests.integration.proxy import proxy_to_redis
from tests.integration.servers import redis_server
from tests.transport_contract import NS, create, expect, step


def settings(url: str, resp: int) -> RedisSettings:
    return RedisSettings(url=url, protocol=resp)  # type: ignore[arg-type]


@pytest.fixture
def prefix() -> Iterator[str]:
    name = unique("tp")
    yield name
    delete_keys(f"{name}:*")


async def next_kind(sub: RedisSubscription, kind: str, timeout: float = 10.0) -> Message:
    """Read until a message of ``kind``, through the errors of a server that is down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = await sub.next(0.5)
        except BackendError:
            continue  # still down: the next call tries to reconnect
        if msg is not None and msg.kind == kind:
            return msg
    pytest.fail(f"no {kind!r} message within {timeout}s")


async def test_a_killed_server_fails_fast_and_the_subscription_comes_back(resp: int) -> None:
    with redis_server() as server:
        t = RedisTransport(settings(server.url, resp), prefix="p")
        sub = t.subscription(NS)
        try:
            await expect(sub, "subscribed")
            await create(t)
            await expect(sub, "config", b"e1")
            server.stop()
            started = time.monotonic()
            with pytest.raises(BackendError, match="publishing to 'app'"):
                await step(t, 1)
            with pytest.raises(BackendError):
                await t.load(NS, max_tail=10)
            assert time.monotonic() - started < 5
            with pytest.raises(BackendError, match="reading the subscription"):
                await sub.next(2)
            assert not sub.connected

            server.start()  # the same port, no data
            await next_kind(sub, "subscribed")
            assert sub.connected
            assert (await create(t)).receivers == 1
            await expect(sub, "config", b"e1")
        finally:
            await sub.aclose()
            await t.aclose()


async def kill(raw: aioredis.Redis, sub: RedisSubscription) -> None:
    """CLIENT KILL the connection of ``sub`` (and no other) on the server."""
    conn = sub._pubsub.connection
    assert conn is not None and conn._writer is not None
    port = conn._writer.get_extra_info("sockname")[1]
    clients = await raw.client_list(_type="pubsub")
    ids = [c["id"] for c in clients if c["addr"] == f"127.0.0.1:{port}"]
    assert len(ids) == 1
    assert await raw.client_kill_filter(_id=ids[0]) == 1


async def test_a_server_side_kill_of_the_pubsub_link_resubscribes(resp: int,
                                                                  prefix: str) -> None:
    t = RedisTransport(settings(REDIS_URL, resp), prefix=prefix)
    sub = t.subscription(NS)
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        await expect(sub, "subscribed")
        await kill(raw, sub)
        await expect(sub, "subscribed")  # redis-py reconnected and re-subscribed by itself
        await create(t)
        await expect(sub, "config", b"e1")
    finally:
        await raw.aclose()
        await sub.aclose()
        await t.aclose()


async def test_a_one_channel_subscription_also_reports_its_resubscription(
        resp: int, prefix: str) -> None:
    t = RedisTransport(settings(REDIS_URL, resp), prefix=prefix)
    channel = f"{prefix}:one"
    sub = RedisSubscription(t.client, {channel: "config"})
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        await expect(sub, "subscribed")
        await kill(raw, sub)
        await expect(sub, "subscribed")
        assert sub.connected
        await raw.publish(channel, b"hello")
        await expect(sub, "config", b"hello")
    finally:
        await raw.aclose()
        await sub.aclose()
        await t.aclose()


async def test_a_half_open_link_gets_no_pong_and_drop_recovers(resp: int, prefix: str) -> None:
    with proxy_to_redis() as proxy:
        t = RedisTransport(settings(proxy.url, resp), prefix=prefix)
        sub = t.subscription(NS)
        try:
            await expect(sub, "subscribed")
            await sub.ping()
            await expect(sub, "pong", b"hotreload-heartbeat")
            proxy.freeze()
            await sub.ping()
            assert await sub.next(0.3) is None  # the reply never comes
            await sub.drop()
            await expect(sub, "subscribed")  # a new connection: not frozen
            await sub.ping()
            await expect(sub, "pong")
        finally:
            await sub.aclose()
            await t.aclose()


async def test_scripts_are_loaded_again_after_a_script_flush(resp: int) -> None:
    with redis_server() as server:
        t = RedisTransport(settings(server.url, resp), prefix="p")
        try:
            await create(t)
            server.client().script_flush()
            assert (await step(t, 1)).ok
            assert (await t.load(NS, max_tail=10)).tail == [b"e2"]
            assert server.client().info("commandstats")["cmdstat_evalsha_ro"]["calls"] >= 1
        finally:
            await t.aclose()


async def test_a_server_without_evalsha_ro_runs_read_only_scripts_with_evalsha(
        resp: int) -> None:
    with redis_server(["--rename-command", "EVALSHA_RO", ""]) as server:
        t = RedisTransport(settings(server.url, resp), prefix="p")
        try:
            await create(t)
            await step(t, 1)
            assert (await t.load(NS, max_tail=10)).tail == [b"e2"]
            assert not t._read_only_scripts
            assert (await t.load_leaves(NS)).meta[b"version"] == b"2"
        finally:
            await t.aclose()


async def test_an_emptied_log_with_newer_ids_is_started_anew(resp: int, prefix: str) -> None:
    t = RedisTransport(settings(REDIS_URL, resp), prefix=prefix)
    raw = redis.Redis.from_url(REDIS_URL)
    try:
        await create(t)
        log = keys_for(NS, prefix).log
        raw.xadd(log, {"e": "x"}, id="90-0")
        raw.xtrim(log, maxlen=0)
        assert raw.xlen(log) == 0 and raw.exists(log)
        assert (await step(t, 1)).ok
        assert await t.read_log(NS, 1) == [b"e2"]
    finally:
        raw.close()
        await t.aclose()


async def test_the_subscription_socket_has_keepalives_and_a_user_timeout(resp: int,
                                                                        prefix: str) -> None:
    s = settings(REDIS_URL, resp)
    t = RedisTransport(s, prefix=prefix)
    sub = t.subscription(NS)
    try:
        await expect(sub, "subscribed")
        conn = sub._pubsub.connection
        assert conn is not None and conn._writer is not None
        sock = conn._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == s.tcp_keepalive_idle
        assert sock.getsockopt(socket.IPPROTO_TCP,
                               socket.TCP_USER_TIMEOUT) == s.tcp_user_timeout_ms
    finally:
        await sub.aclose()
        await t.aclose()
