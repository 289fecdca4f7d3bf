"""`ClusterTransport`: the transport over a Redis Cluster (redis-py asyncio ``RedisCluster``).

Every key and channel of a namespace carries the ``{<ns>}`` hash tag (protocol §1), so they live
in one slot: each script runs as one EVALSHA on the slot's primary, and publishes with
``SPUBLISH`` to the namespace's shard channels from inside the script. Redis 7.0 allows that
without declaring the channel, as long as it hashes to the slot of the script's keys (a channel
of another slot fails the script: "Script attempted to access a non local key in a cluster
node"). redis-py follows MOVED/ASK redirections and refreshes its slot map; a node that lost its
script cache (a failover, a restart) answers NOSCRIPT and gets the script with EVAL.

With ``read_from_replicas`` (the default) the reads go to the slot's replicas (its primary when
it has none) and subscriptions listen on one of them; a caller that needs the current state
passes ``primary=True`` (see `hotreload.transport.base`). Subscriptions use sharded Pub/Sub on
a connection of their own to one node of the namespace's shard, and move by themselves when the
shard fails over or the slot moves (`ClusterSubscription`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import LoadBalancingStrategy
from redis.crc import key_slot

from ..config import RedisSettings
from ..errors import BackendError
from ..wire.names import DEFAULT_PREFIX
from . import _scripts as S
from ._client import REDIS_ERRORS, describe_error, keepalive_options
from ._client import failed as _failed
from ._client import ms as _ms
from ._cluster_subscription import ROLE_CHECK_INTERVAL, ClusterSubscription, choose_node
from ._redis_cache import SCAN_COUNT, RedisCacheStore, glob_escape
from .base import Commit, CommitResult, RawHead
from .redis import BaseRedisTransport, _opt

__all__ = ["ROLE_CHECK_INTERVAL", "ClusterCacheStore", "ClusterSubscription", "ClusterTransport",
           "build_cluster_client", "choose_node"]

log = logging.getLogger("hotreload.transport")

#: Errors of a node that does not answer (as opposed to one that answers with an error).
_LINK_ERRORS: Final = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class _Connection(Connection):
    """A node connection whose writes and reads fail with ``ConnectionError`` when another task
    closed it under them. redis-py's cluster client closes every node's connections, in use or
    not, when a command meets CLUSTERDOWN (a shard failing over); a command of another task then
    dies with ``AttributeError``/``TypeError`` from the closed stream (redis-py issues 3546,
    2349), which neither its retries nor our seam would recognise."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        try:
            await super().send_packed_command(command, check_health)
        except (AttributeError, TypeError) as exc:
            await self.disconnect(nowait=True)
            raise redis.exceptions.ConnectionError(
                "the connection was closed during the write") from exc

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except (AttributeError, TypeError) as exc:
            await self.disconnect(nowait=True)
            raise redis.exceptions.ConnectionError(
                "the connection was closed during the read") from exc


class _SSLConnection(_Connection, SSLConnection):
    pass


class _RedisCluster(RedisCluster):
    """``RedisCluster`` with `_Connection`, and that routes EVALSHA_RO / EVAL_RO by their first
    key, as it does EVALSHA (redis-py otherwise asks a node ``COMMAND GETKEYS`` first: a second
    round trip per read)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cls = _SSLConnection if kwargs.get("ssl") else _Connection
        self.nodes_manager.connection_kwargs["connection_class"] = cls  # the nodes it finds
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = cls

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command.upper() in ("EVALSHA_RO", "EVAL_RO") and len(args) > 2 and int(args[1]):
            return self.keyslot(args[2])
        return await super()._determine_slot(command, *args)


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host, int(port)


def _node_kwargs(s: RedisSettings, username: str | None, password: str,
                 tls: bool) -> dict[str, Any]:
    """Connection options of every node (command pools and subscriptions alike)."""
    kwargs: dict[str, Any] = {
        "username": username,
        "password": password or None,
        "protocol": s.protocol,
        "socket_connect_timeout": s.connect_timeout,
        "socket_timeout": s.socket_timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(s),
        "decode_responses": False,
    }
    if tls:
        kwargs["ssl"] = True
        for key, value in (("ssl_ca_certs", s.tls_ca_file), ("ssl_certfile", s.tls_cert_file),
                           ("ssl_keyfile", s.tls_key_file)):
            if value:
                kwargs[key] = value
    return kwargs


def build_cluster_client(s: RedisSettings, *, retries: int = 3) -> RedisCluster:
    """A ``RedisCluster`` for ``s`` (cluster mode): seeds, replica reads, keepalives, timeouts,
    bounded jittered retries."""
    cluster, username, password, tls = s.cluster_settings()
    return _RedisCluster(
        startup_nodes=[ClusterNode(*_host_port(n)) for n in cluster.nodes],
        load_balancing_strategy=(LoadBalancingStrategy.ROUND_ROBIN_REPLICAS
                                 if cluster.read_from_replicas else None),
        require_full_coverage=False,  # a shard that is down leaves the others usable
        max_connections=s.pool_size,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries),
        **_node_kwargs(s, username, password, tls),
    )


def _count(reply: Any) -> int:
    """The count of a one-channel ``PUBSUB SHARDNUMSUB`` reply, whatever shape redis-py gave."""
    if isinstance(reply, dict):
        reply = next(iter(reply.values()), [])
    if reply and isinstance(reply[0], (list, tuple)):
        reply = reply[0]
    return int(reply[1]) if len(reply) > 1 else 0


class ClusterTransport(BaseRedisTransport):
    """The transport over a Redis Cluster, from ``settings.cluster`` (or a ``redis+cluster://``
    URL). One ``RedisCluster`` client (a pool per node) carries the commands; each subscription
    has a connection of its own."""

    publish_command = "SPUBLISH"

    def __init__(self, settings: RedisSettings, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.cluster = build_cluster_client(settings)
        cluster, username, password, tls = settings.cluster_settings()
        self.read_from_replicas = cluster.read_from_replicas
        self._node_kwargs = _node_kwargs(settings, username, password, tls)
        super().__init__(settings, prefix, self.cluster, own=True)

    # ------------------------------------------------------------------ topology

    async def slot_nodes(self, slot: int, *, refresh: bool = False) -> list[ClusterNode]:
        """The nodes serving ``slot``, primary first (``refresh``: ask the cluster again)."""
        try:
            await self.cluster.initialize()  # the first use; nothing afterwards
            if refresh:
                await self.cluster.nodes_manager.initialize()
        except REDIS_ERRORS as exc:
            raise _failed("reading the cluster's slot map", exc) from exc
        nodes = self.cluster.nodes_manager.slots_cache.get(slot)
        if not nodes:
            raise BackendError(f"no node of the cluster serves slot {slot}")
        return list(nodes)

    async def _listeners(self, channel: str, nodes: Sequence[ClusterNode]) -> int:
        """How many connections of ``nodes`` listen on the shard channel (a node that does not
        answer counts 0)."""
        async def one(node: ClusterNode) -> int:
            try:
                return _count(await asyncio.wait_for(
                    node.execute_command("PUBSUB SHARDNUMSUB", channel),
                    self.settings.socket_timeout))
            except REDIS_ERRORS as exc:  # asyncio.TimeoutError is an OSError
                log.debug("counting the listeners on %s failed: %s", node.name,
                          describe_error(exc))
                return 0
        return sum(await asyncio.gather(*(one(n) for n in nodes)))

    async def _with_replica_listeners(self, result: CommitResult, channel: str) -> CommitResult:
        """SPUBLISH counts the primary's listeners only: add those of the replicas."""
        if not result.ok:
            return result
        try:
            nodes = await self.slot_nodes(key_slot(channel.encode()))
        except BackendError:
            return result
        extra = await self._listeners(channel, nodes[1:])
        return CommitResult(result.ok, result.epoch, result.version, result.receivers + extra,
                            result.protocol)

    # ------------------------------------------------------------------ scripts

    async def _eval(self, script: S.Script, keys: Sequence[str], args: Sequence[Any], *,
                    primary: bool = False, _again: bool = False) -> Any:
        """EVALSHA (EVALSHA_RO for read-only scripts unless ``primary``: a replica may serve
        those). A node without the script (NOSCRIPT: new, restarted, promoted) runs it with
        EVAL, which also caches it there. A write that meets a demoted primary (READONLY), and a
        read of the primary that meets a dead node, read the slot map again and run once more."""
        client = self._cmd
        ro = script.read_only and not primary
        try:
            try:
                if ro:
                    return await client.evalsha_ro(script.sha, len(keys), *keys, *args)
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                if ro:
                    return await client.eval_ro(script.text, len(keys), *keys, *args)
                return await client.eval(script.text, len(keys), *keys, *args)
        except _LINK_ERRORS as exc:
            if ro:
                # A replica that died stays in the slot map until the cluster marks it
                # failed (cluster-node-timeout): read the primary meanwhile.
                log.debug("a replica read failed (%s): reading the primary",
                          describe_error(exc))
                return await self._eval(script, keys, args, primary=True)
            if not script.read_only or _again:
                raise  # a write may have been applied: the caller decides
            # A read of the primary that met a dead node: a failover the slot map has not
            # seen yet (redis-py refreshes it after errors, but not more often than its
            # refresh delay). Read the slot map again and read once more.
            log.debug("a primary read failed (%s): reading the slot map again",
                      describe_error(exc))
            await self.cluster.nodes_manager.initialize()
            return await self._eval(script, keys, args, primary=True, _again=True)
        except redis.exceptions.ReadOnlyError as exc:
            if ro or _again:
                raise
            # The node the slot map names as the primary was demoted (a planned failover)
            # and nothing told redis-py: with replica reads it opens every connection in
            # READONLY mode, so the old primary runs the script (EVALSHA is no write
            # command: no MOVED) and its first write fails. Nothing was written: read the
            # slot map again and run the script once more, on the new primary. (Without
            # this, every write failed until a connection error refreshed the map.)
            log.debug("a write met a demoted primary (%s): reading the slot map again",
                      describe_error(exc))
            await self.cluster.nodes_manager.initialize()
            return await self._eval(script, keys, args, primary=primary, _again=True)

    # ------------------------------------------------------------------ reads

    async def ping(self) -> None:
        """Every primary answers."""
        try:
            await self.cluster.execute_command("PING", target_nodes=RedisCluster.PRIMARIES)
        except REDIS_ERRORS as exc:
            raise _failed(f"pinging the cluster at {self.describe()}", exc) from exc

    async def head(self, ns: str, *, primary: bool = False) -> RawHead:
        k = self.keys(ns)
        try:
            meta, inv = await self._eval(S.HEAD, [k.meta, k.inv], [], primary=primary)
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the head of {ns!r}", exc) from exc
        return RawHead(*(_opt(v) for v in meta), *(_opt(v) for v in inv))

    async def _read_log(self, key: str, first: int, last: int | None, count: int | None,
                        newest_first: bool, primary: bool) -> list[bytes]:
        high = "+" if last is None else str(last)
        reply = await self._eval(S.READ_LOG, [key], [
            str(first), high, "" if count is None else str(count), "1" if newest_first else "",
        ], primary=primary)
        return [bytes(e) for e in reply or []]

    async def read_log(self, ns: str, first: int, last: int | None = None, *,
                       count: int | None = None, newest_first: bool = False,
                       primary: bool = False) -> list[bytes]:
        try:
            return await self._read_log(self.keys(ns).log, first, last, count, newest_first,
                                        primary)
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the change log of {ns!r}", exc) from exc

    async def read_invalidation_log(self, ns: str, first: int, last: int, *,
                                    primary: bool = False) -> list[bytes]:
        try:
            return await self._read_log(self.keys(ns).inv_log, first, last, None, False,
                                        primary)
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the invalidation log of {ns!r}", exc) from exc

    async def write_presence(self, ns: str, instance: str, record: bytes,
                             ttl: float) -> RawHead:
        """The record is written on the primary while the head is read (from a replica, or
        the primary if it fails), concurrently."""
        k = self.keys(ns)
        now = int(time.time() * 1000)

        async def write() -> None:
            pipe = self._cmd.pipeline(transaction=False)
            pipe.set(k.presence_record(instance), record, px=_ms(ttl))
            pipe.zadd(k.presence, {instance: now + _ms(ttl)})
            pipe.zremrangebyscore(k.presence, "-inf", f"({now}")
            await pipe.execute()

        try:
            _, head = await asyncio.gather(write(), self.head(ns))
        except REDIS_ERRORS as exc:
            raise _failed(f"writing the presence of {ns!r}", exc) from exc
        return head

    async def subscribers(self, ns: str) -> int:
        """Connections listening on the config channel, on every node of the shard."""
        channel = self.keys(ns).config_channel
        nodes = await self.slot_nodes(key_slot(channel.encode()))
        return await self._listeners(channel, nodes)

    # ------------------------------------------------------------------ writes

    async def commit(self, ns: str, commit: Commit) -> CommitResult:
        result = await super().commit(ns, commit)
        return await self._with_replica_listeners(result, self.keys(ns).config_channel)

    async def send_invalidation(self, ns: str, *, expect: tuple[str, int] | None, epoch: str,
                                seq: int, event: bytes, log_maxlen: int) -> CommitResult:
        result = await super().send_invalidation(ns, expect=expect, epoch=epoch, seq=seq,
                                                 event=event, log_maxlen=log_maxlen)
        return await self._with_replica_listeners(result, self.keys(ns).inv_channel)

    # ------------------------------------------------------------------ factories

    def subscription(self, ns: str) -> ClusterSubscription:
        k = self.keys(ns)
        return ClusterSubscription(self, {k.config_channel: "config",
                                          k.inv_channel: "invalidate"})

    def cache_store(self, ns: str, name: str) -> ClusterCacheStore:
        return ClusterCacheStore(self, self.keys(ns), name)

    def node_client(self, host: str, port: int) -> aioredis.Redis:
        """A client of one node, for a subscription: no retries (the subscription reconnects
        itself, choosing the node again)."""
        return aioredis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0),
                              **self._node_kwargs)



class ClusterCacheStore(RedisCacheStore):
    """`RedisCacheStore` on a cluster: reads go to the primary (a replica may not have the
    latest invalidation yet), and a prefix is scanned on the slot's primary only."""

    _t: ClusterTransport

    async def read(self, key: str) -> tuple[bytes | None, tuple[bytes, bytes]]:
        try:
            value, gen, epoch = await self._t._eval(
                S.CACHE_READ, [self.value_prefix + key, self.gen_prefix + key, self.epoch_key],
                [], primary=True)
        except REDIS_ERRORS as exc:
            raise _failed("reading the L2 cache", exc) from exc
        return value, (gen or b"0", epoch or b"0")

    async def invalidate_prefix(self, prefix: str) -> int:
        client = self._t._cmd
        pattern = glob_escape(self.value_prefix + prefix) + "*"
        deleted = 0
        try:
            await client.incr(self.epoch_key)
            node = (await self._t.slot_nodes(key_slot(self.epoch_key.encode())))[0]
            cursor: Any = 0
            while True:
                reply = await node.execute_command("SCAN", cursor, "MATCH", pattern,
                                                   "COUNT", SCAN_COUNT)
                cursor, names = reply[0], reply[1]
                if names:
                    deleted += int(await client.unlink(*names))
                if int(cursor) == 0:
                    return deleted
        except REDIS_ERRORS as exc:
            raise _failed("invalidating an L2 cache prefix", exc) from exc
