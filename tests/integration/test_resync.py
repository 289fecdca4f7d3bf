"""Lost messages: killed, cut and half-open links, trimmed logs, restarted servers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from hotreload import AsyncPublisher, AsyncSubscriber, RecoveryNeeded, Resync, SettingsChange
from hotreload.transport.redis import RedisTransport
from hotreload.wire import Keys
from tests.conftest import await_until
from tests.integration.conftest import RecordingHook, make_config
from tests.integration.proxy import Proxy
from tests.integration.servers import RedisServer, redis_server

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    px = Proxy()
    yield px
    px.close()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as s:
        yield s


async def test_client_kill_while_events_flow_converges(server: RedisServer, resp: int,
                                                       namespace: str) -> None:
    config = make_config(url=server.url, protocol=resp)
    with server.client() as killer:
        await _kill_while_events_flow(config, namespace, killer)


async def _kill_while_events_flow(config: Any, namespace: str, killer: redis.Redis) -> None:
    async with AsyncPublisher(config, namespace=namespace) as pub, \
            AsyncSubscriber(config, namespace=namespace) as sub:
        resyncs: list[Resync] = []
        sub.on_resync(resyncs.append)
        for i in range(1, 201):
            await pub.publish({"counter": i, f"k{i % 7}": i})
            if i % 40 == 0:
                kills = i // 40 - 1
                await await_until(lambda k=kills: sub.stats.reconnects == k,  # type: ignore[misc]
                                  what="re-subscribed")
                assert killer.client_kill_filter(_type="pubsub") >= 1
        await await_until(lambda: sub.stats.reconnects == 5, what="last re-subscribe")
        final = await pub.snapshot()
        await sub.wait_for_version(final.version, timeout=15)
        assert sub.as_dict() == final.settings
        assert len(resyncs) >= 1
        assert sub.stats.holds == 0 and sub.server_note is None  # never "the server is behind"


async def test_events_missed_while_cut_off_are_replayed_in_order(proxy: Proxy, resp: int,
                                                                  namespace: str) -> None:
    pub_config = make_config(protocol=resp)
    sub_config = make_config(url=proxy.url, protocol=resp)
    async with AsyncPublisher(pub_config, namespace=namespace) as pub, \
            AsyncSubscriber(sub_config, namespace=namespace) as sub:
        hook = RecordingHook()
        sub.register_cache(hook)
        seen: list[int] = []
        sub.on_change(lambda ch: seen.append(ch.version))
        await pub.publish({"a": 1})
        await pub.invalidate(["user:0"])  # the invalidation history the subscriber follows
        await sub.wait_for_version(1)
        await await_until(lambda: hook.events, what="the first invalidation")
        proxy.cut()
        await await_until(lambda: not sub.connected, what="link down")
        assert hook.trusted[-1] is False  # caches stop trusting L1 while blind
        await pub.publish({"a": 2})
        await pub.invalidate(["user:1"])
        await pub.publish({"a": 3})
        proxy.restore()
        await sub.wait_for_version(3, timeout=15)
        assert seen == [1, 2, 3]  # invalidations are numbered apart (protocol §9)
        await await_until(lambda: len(hook.events) == 2, what="the missed invalidation")
        # replayed from the invalidation log, not "clear all"
        assert [(e.version, e.keys, e.all) for e in hook.events] == [
            (1, ("user:0",), False), (2, ("user:1",), False)]
        assert sub.stats.replays >= 1 and sub.get("a") == 3
        await await_until(lambda: hook.trusted[-1] is True, what="trusted again")


async def test_gap_older_than_the_log_reloads_the_snapshot(proxy: Proxy, resp: int,
                                                           namespace: str,
                                                           raw_redis: redis.Redis) -> None:
    pub_config = make_config(protocol=resp)
    sub_config = make_config(url=proxy.url, protocol=resp)
    async with AsyncPublisher(pub_config, namespace=namespace) as pub, \
            AsyncSubscriber(sub_config, namespace=namespace) as sub:
        hook = RecordingHook()
        sub.register_cache(hook)
        changes: list[SettingsChange] = []
        sub.on_change(changes.append)
        await pub.publish({"a": 1, "gone": True})
        await sub.wait_for_version(1)
        proxy.cut()
        await await_until(lambda: not sub.connected, what="link down")
        for i in range(2, 8):
            await pub.publish({"a": i})
        await pub.publish({}, ["gone"])
        raw_redis.delete(pub.keys().log)  # the log lost what we missed (trimmed)
        proxy.restore()
        await sub.wait_for_version(8, timeout=15)
        assert sub.as_dict() == {"a": 7}
        assert sub.stats.reloads == 2
        # one synthesized change with the net difference, and caches told to drop everything
        assert changes[-1].resync and {c.key for c in changes[-1].changes} == {"a", "gone"}
        assert hook.events[-1].all and hook.events[-1].reason == "resync"


async def test_half_open_link_is_detected_by_heartbeat(proxy: Proxy, namespace: str) -> None:
    pub_config = make_config()
    # Only the heartbeat may notice: the version backstop is far away.
    sub_config = make_config(url=proxy.url, subscriber={
        "heartbeat_interval": 0.5, "heartbeat_timeout": 1.5, "version_check_interval": 600})
    async with AsyncPublisher(pub_config, namespace=namespace) as pub, \
            AsyncSubscriber(sub_config, namespace=namespace) as sub:
        await pub.publish({"a": 1})
        await sub.wait_for_version(1)
        proxy.freeze()  # bytes vanish, sockets stay open: no error ever reaches redis-py
        await pub.publish({"a": 2})
        await sub.wait_for_version(2, timeout=15)
        assert sub.stats.heartbeat_timeouts >= 1
        assert sub.get("a") == 2


async def test_redis_restart_keeps_last_known_settings_until_republished(
    server: RedisServer, namespace: str
) -> None:
    config = make_config(url=server.url)
    async with AsyncSubscriber(config, namespace=namespace) as sub, \
            AsyncPublisher(config, namespace=namespace) as pub:
        first = await pub.replace({"a": 1, "b": 2})
        await pub.publish({"a": 5})
        await sub.wait_for_version(2)
        server.stop()
        await await_until(lambda: not sub.connected, what="link down")
        server.start()  # empty: no persistence
        await await_until(lambda: sub.connected and sub.server_note is not None, timeout=15,
                          what="the loss reported")
        assert sub.as_dict() == {"a": 5, "b": 2} and sub.version == 2
        assert "no state on the server" in sub.server_note
        assert sub.link_state == "stale" and sub.status()["server"] == sub.server_note
        # The publisher saw v2: a partial publish would start a history of one key.
        with pytest.raises(RecoveryNeeded, match="replace") as caught:
            await pub.publish({"a": 6})
        assert caught.value.reason == "lost"
        assert sub.as_dict() == {"a": 5, "b": 2}
        result = await pub.replace({"a": 6})  # the whole truth: a new epoch
        assert result.version == 1 and result.recovered and result.epoch != first.epoch
        await await_until(lambda: sub.received_version == 1, timeout=15, what="republished")
        assert sub.as_dict() == {"a": 6} and sub.epoch == result.epoch
        assert sub.server_note is None and sub.last_error is None


class _SilentTransport(RedisTransport):
    """Commits as usual, but publishes on a channel nobody listens to: the event is lost in
    flight, only the head, the leaves and the log move."""

    def keys(self, ns: str) -> Keys:
        keys = super().keys(ns)
        return dataclasses.replace(keys, config_channel=keys.config_channel + ":nobody")


async def test_server_version_check_catches_up_without_any_message(
    namespace: str, raw_redis: Any
) -> None:
    config = make_config()
    async with AsyncSubscriber(config, namespace=namespace) as sub, \
            AsyncPublisher(config, namespace=namespace) as pub:
        await pub.publish({"a": 1})
        await sub.wait_for_version(1)
        # A message lost in flight: the commit publishes on a channel nobody listens on.
        transport = _SilentTransport(config.redis, prefix=config.prefix)
        async with AsyncPublisher(config, namespace=namespace, transport=transport) as silent:
            assert (await silent.publish({"a": 2})).receivers == 0
        await transport.aclose()
        await sub.wait_for_version(2, timeout=10)
        assert sub.get("a") == 2 and sub.stats.replays == 1


async def test_slow_subscriber_dropped_at_the_output_buffer_limit_converges(
    server: RedisServer, namespace: str
) -> None:
    """Redis silently drops a subscriber that reads too slowly; it must resync, not go stale."""
    with server.client() as admin:
        admin.config_set("client-output-buffer-limit", "pubsub 32kb 16kb 1")
    config = make_config(url=server.url)
    async with AsyncPublisher(config, namespace=namespace) as pub, \
            AsyncSubscriber(config, namespace=namespace) as sub:
        gate = asyncio.Event()

        @sub.on_change
        async def slow(change: SettingsChange) -> None:
            await gate.wait()  # the app is busy: nothing is read from the socket meanwhile

        await pub.publish({"blob": "x" * 1000, "n": 0})
        await await_until(lambda: sub.received_version == 1, what="first event")
        for i in range(1, 301):
            await pub.publish({"n": i, "blob": f"{i}" + "x" * 20_000})
        gate.set()
        await sub.wait_for_version(301, timeout=20)
        assert sub.get("n") == 300
        assert sub.stats.reconnects >= 1  # it was dropped, and came back
