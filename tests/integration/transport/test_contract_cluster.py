"""The transport contract (tests/transport_contract.py) on `ClusterTransport`: RESP3 reading from
replicas, and RESP2 reading from primaries only.

The contract expects to read what it just wrote. A replica lags its primary (docs/scaling.md),
so when the transport reads from replicas, every write here waits until the shard's replicas
have applied it; what replica lag does is tested in test_cluster.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from hotreload.config import build_config
from hotreload.transport import Commit, CommitResult, RawHead, Subscription
from hotreload.transport.cluster import ClusterSubscription, ClusterTransport
from hotreload.transport.redis import RedisSubscription
from hotreload.wire.names import keys_for
from tests.conftest import unique
from tests.integration.cluster_servers import ClusterServers
from tests.transport_contract import *  # noqa: F403
from tests.transport_contract import NS

REPLICA_SYNC_TIMEOUT = 5.0


async def replicas_caught_up(raw: aioredis.RedisCluster, key: str) -> None:
    """Wait until every replica of ``key``'s shard has applied what its primary holds."""
    await raw.initialize()
    nodes = raw.nodes_manager.slots_cache[key_slot(key.encode())]
    offset = int((await nodes[0].execute_command("INFO", "replication"))["master_repl_offset"])
    deadline = time.monotonic() + REPLICA_SYNC_TIMEOUT
    for replica in nodes[1:]:
        while int((await replica.execute_command("INFO", "replication"))
                  .get("slave_repl_offset", -1)) < offset:
            if time.monotonic() > deadline:
                pytest.fail(f"replica {replica.name} did not catch up in "
                            f"{REPLICA_SYNC_TIMEOUT}s")


class CaughtUpClusterTransport(ClusterTransport):
    """A `ClusterTransport` whose writes return once the shard's replicas applied them."""

    raw: aioredis.RedisCluster

    async def _caught_up(self, ns: str) -> None:
        if self.read_from_replicas:
            await replicas_caught_up(self.raw, keys_for(ns, self.prefix).meta)

    async def commit(self, ns: str, commit: Commit) -> CommitResult:
        result = await super().commit(ns, commit)
        await self._caught_up(ns)
        return result

    async def write_checkpoint(self, ns: str, epoch: str, version: int,
                               fields: Mapping[str, str | bytes]) -> bool:
        done = await super().write_checkpoint(ns, epoch, version, fields)
        await self._caught_up(ns)
        return done

    async def send_invalidation(self, ns: str, *, expect: tuple[str, int] | None, epoch: str,
                                seq: int, event: bytes, log_maxlen: int) -> CommitResult:
        result = await super().send_invalidation(ns, expect=expect, epoch=epoch, seq=seq,
                                                 event=event, log_maxlen=log_maxlen)
        await self._caught_up(ns)
        return result

    async def write_presence(self, ns: str, instance: str, record: bytes,
                             ttl: float) -> RawHead:
        head = await super().write_presence(ns, instance, record, ttl)
        await self._caught_up(ns)
        return head

    async def remove_presence(self, ns: str, instance: str) -> None:
        await super().remove_presence(ns, instance)
        await self._caught_up(ns)

    async def write_status(self, name: str, doc: bytes, ttl: float) -> None:
        await super().write_status(name, doc, ttl)
        if self.read_from_replicas:
            await replicas_caught_up(self.raw, f"{self.prefix}:{{daemons}}")

    async def delete_status(self, name: str) -> None:
        await super().delete_status(name)
        if self.read_from_replicas:
            await replicas_caught_up(self.raw, f"{self.prefix}:{{daemons}}")


class ClusterBackend:
    def __init__(self, cluster: ClusterServers, resp: int, replicas: bool, prefix: str) -> None:
        self.cluster = cluster
        self.config = build_config({"prefix": prefix, "redis": {
            "protocol": resp, "cluster": {"nodes": cluster.addrs[:2],
                                          "read_from_replicas": replicas}}})
        node = cluster.running()[0]
        self.raw = aioredis.RedisCluster(host="127.0.0.1", port=node.port)
        self.transport = self.other()

    def other(self) -> CaughtUpClusterTransport:
        t = CaughtUpClusterTransport(self.config.redis, prefix=self.config.prefix)
        t.raw = self.raw
        self._others = [*getattr(self, "_others", []), t]
        return t

    def listen(self, channel: str) -> Subscription:
        # Classic Pub/Sub (the protocol-1 channel): a PUBLISH counts the receivers of the node
        # it runs on, so listen on the primary of the channel's slot.
        shard = self.cluster.shard_of(channel)
        client = aioredis.Redis(host="127.0.0.1", port=shard.primary.port)
        self._listeners = [*getattr(self, "_listeners", []), client]
        return RedisSubscription(client, {channel: "config"})

    async def _settle(self, key: str) -> None:
        await replicas_caught_up(self.raw, key)

    async def put(self, key: str, value: bytes | Mapping[bytes, bytes] | list[bytes]) -> None:
        await self.raw.delete(key)
        if isinstance(value, bytes):
            await self.raw.set(key, value)
        elif isinstance(value, list):
            await self.raw.rpush(key, *value)
        elif value:
            await self.raw.hset(key, mapping=dict(value))
        await self._settle(key)

    async def delete(self, key: str) -> None:
        await self.raw.delete(key)
        await self._settle(key)

    async def key_type(self, key: str) -> str:
        return (await self.raw.type(key)).decode()

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return await self.raw.hgetall(key)  # type: ignore[no-any-return]

    async def xadd(self, key: str, version: int, fields: Mapping[bytes, bytes]) -> None:
        await self.raw.xadd(key, dict(fields), id=f"{version}-0")
        await self._settle(key)

    async def xlen(self, key: str) -> int:
        return int(await self.raw.xlen(key))

    async def pttl(self, key: str) -> int:
        return int(await self.raw.pttl(key))

    async def force_unsubscribe(self, sub: Subscription) -> None:
        # What the server does when the slot moves away: a SUNSUBSCRIBE the client did not
        # ask for (this one is sent on its connection, behind its back).
        assert isinstance(sub, ClusterSubscription)
        assert sub._pubsub is not None and sub._pubsub.connection is not None
        await sub._pubsub.connection.send_command("SUNSUBSCRIBE", sub._channels[0])

    async def aclose(self) -> None:
        for t in getattr(self, "_others", []):
            await t.aclose()
        for client in getattr(self, "_listeners", []):
            await client.aclose()
        await self.raw.aclose()


@pytest.fixture(params=[(3, True), (2, False)], ids=["resp3-replicas", "resp2-primaries"])
async def backend(request: pytest.FixtureRequest,
                  redis_cluster: ClusterServers) -> AsyncIterator[ClusterBackend]:
    resp, replicas = request.param
    b = ClusterBackend(redis_cluster, resp, replicas, unique("tp"))
    try:
        yield b
    finally:
        await b.aclose()


async def test_the_subscription_listens_on_a_replica_of_the_shard(
        backend: ClusterBackend) -> None:
    """The placement the contract ran with: a replica, or the primary without replica reads."""
    sub = backend.transport.subscription(NS)
    assert isinstance(sub, ClusterSubscription)
    try:
        msg = await sub.next(5)
        assert msg is not None and msg.kind == "subscribed"
        shard = backend.cluster.shard_of(keys_for(NS, backend.config.prefix).meta)
        expected = shard.replicas if backend.transport.read_from_replicas else (shard.primary,)
        assert sub.node in {s.addr for s in expected}
    finally:
        await sub.aclose()
