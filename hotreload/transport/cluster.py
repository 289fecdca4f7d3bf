"""`ClusterTransport`: the transport over a Redis Cluster (redis-py asyncio ``RedisCluster``).

Every key and channel of a namespace carries the ``{<ns>}`` hash tag (protocol §1), so they live
in one slot: each script runs as one EVALSHA on the slot's primary, and publishes with
``SPUBLISH`` to the namespace's shard channels from inside the script (same slot: nothing more
to declare). redis-py follows MOVED/ASK redirections and refreshes its slot map; a node that
lost its script cache (a failover, a restart) answers NOSCRIPT and gets the script with EVAL.

With ``read_from_replicas`` (the default) the reads go to the slot's replicas (its primary when
it has none) and subscriptions listen on one of them; a caller that needs the current state
passes ``primary=True`` (see `hotreload.transport.base`). Subscriptions use sharded Pub/Sub on
a connection of their own to one node of the namespace's shard, and move by themselves when the
shard fails over or the slot moves (`ClusterSubscription`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
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
from ._redis_cache import SCAN_COUNT, RedisCacheStore, glob_escape
from .base import Commit, CommitResult, Message, RawHead
from .redis import HEARTBEAT, BaseRedisTransport, _opt

__all__ = ["ROLE_CHECK_INTERVAL", "ClusterCacheStore", "ClusterSubscription", "ClusterTransport",
           "build_cluster_client", "choose_node"]

log = logging.getLogger("hotreload.transport")

#: Errors of a node that does not answer (as opposed to one that answers with an error).
_LINK_ERRORS: Final = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
#: Attempts of one `ClusterSubscription.next` to follow MOVED/ASK replies to SSUBSCRIBE.
_REDIRECTS: Final = 3
#: A subscription checks its node's ROLE at most this often (seconds) while it is read, and at
#: every ping: a replica promoted after its primary died unsubscribes nobody.
ROLE_CHECK_INTERVAL: Final = 1.0


class _RedisCluster(RedisCluster):
    """``RedisCluster`` that routes EVALSHA_RO / EVAL_RO by their first key, as it does EVALSHA
    (redis-py otherwise asks a node ``COMMAND GETKEYS`` first: a second round trip per read)."""

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
                    primary: bool = False) -> Any:
        """EVALSHA (EVALSHA_RO for read-only scripts unless ``primary``: a replica may serve
        those). A node without the script (NOSCRIPT: new, restarted, promoted) runs it with
        EVAL, which also caches it there."""
        client = self._cmd
        ro = script.read_only and not primary
        try:
            if ro:
                return await client.evalsha_ro(script.sha, len(keys), *keys, *args)
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            if ro:
                return await client.eval_ro(script.text, len(keys), *keys, *args)
            return await client.eval(script.text, len(keys), *keys, *args)
        except _LINK_ERRORS as exc:
            if not ro:
                raise
            # A replica that died stays in the slot map until the cluster marks it failed
            # (cluster-node-timeout): read the primary meanwhile.
            log.debug("a replica read failed (%s): reading the primary", describe_error(exc))
            return await self._eval(script, keys, args, primary=True)

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


def choose_node(nodes: Sequence[ClusterNode], *, replicas: bool,
                avoid: str | None = None) -> ClusterNode:
    """The node a subscription listens on, of a slot's ``nodes`` (primary first): a random
    replica with ``replicas``, but not ``avoid`` (the one that just failed); the primary when
    there is no other."""
    if replicas:
        fresh = [n for n in nodes[1:] if n.name != avoid]
        if fresh:
            return random.choice(fresh)
    return nodes[0]


def _role(reply: Any) -> tuple[Any, ...]:
    """What identifies a node's place in its shard: its role, and a replica's primary."""
    role = bytes(reply[0]) if isinstance(reply[0], (bytes, bytearray)) else str(reply[0]).encode()
    if role in (b"slave", b"replica"):
        return (role, reply[1], int(reply[2]))
    return (role,)


class ClusterSubscription:
    """Sharded Pub/Sub (SSUBSCRIBE) to a namespace's config and invalidation channels, on a
    connection of its own to one node of the namespace's shard: a replica with
    ``read_from_replicas`` (the primary when the shard has none), else the primary.

    It moves by itself, and yields ``subscribed`` again once both channels are confirmed on the
    new connection (the subscriber's cue to resync):

    - the server unsubscribes it (the slot moved away, or its node was demoted): it yields
      ``unsubscribed``, then subscribes where the slot lives now;
    - a MOVED/ASK reply to SSUBSCRIBE, a connection error or a restarted node: the slot map is
      read again and the next call subscribes where the slot lives now (a failed read raises
      `BackendError` first, as on one server);
    - its node changed role without unsubscribing anyone (a replica promoted when its primary
      died): `next` (every `ROLE_CHECK_INTERVAL` seconds) and `ping` check the node's ``ROLE``
      in the background, and a change moves the subscription.
    """

    def __init__(self, transport: ClusterTransport, channels: Mapping[str, Any]) -> None:
        self._t = transport
        self._kinds = {c.encode(): kind for c, kind in channels.items()}  # channel -> kind
        self._channels = tuple(self._kinds)
        slots = {key_slot(c) for c in self._channels}
        if len(slots) != 1:
            raise ValueError("the channels of one subscription must share a slot")
        self._slot = slots.pop()
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._node: ClusterNode | None = None
        self._role: tuple[Any, ...] = ()
        self._confirmed: set[bytes] = set()
        self._ready = False  # "subscribed" was yielded for this connection
        self._stale = False  # read the slot map again before the next connect
        self._avoid: str | None = None  # a node that just failed: another one if possible
        self._moved = False  # the probe saw the node change role
        self._generation = 0
        self._probe: asyncio.Task[None] | None = None
        self._probe_due = 0.0  # loop time of the next periodic ROLE check
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def node(self) -> str | None:
        """``host:port`` of the node the subscription listens on (None: not connected)."""
        return self._node.name if self._node is not None and self._pubsub is not None else None

    @property
    def connected(self) -> bool:
        pubsub = self._pubsub
        conn = pubsub.connection if pubsub is not None else None
        return self._ready and not self._moved and conn is not None and conn.is_connected

    # ------------------------------------------------------------------ connecting

    async def _connect(self) -> None:
        """Subscribe on a node of the slot (the slot map read again if it is stale)."""
        async with self._lock:
            if self._pubsub is not None:
                return
            nodes = await self._t.slot_nodes(self._slot, refresh=self._stale)
            self._stale = True  # until this connect succeeds
            node = choose_node(nodes, replicas=self._t.read_from_replicas, avoid=self._avoid)
            client = self._t.node_client(node.host, int(node.port))
            pubsub = client.pubsub()
            try:
                role = _role(await node.execute_command("ROLE"))
                await pubsub.ssubscribe(*self._channels)
            except REDIS_ERRORS as exc:
                self._avoid = node.name
                await _close(pubsub, client)
                raise _failed(f"subscribing on {node.name}", exc) from exc
            self._client, self._pubsub, self._node, self._role = client, pubsub, node, role
            self._confirmed = set()
            self._ready = self._moved = self._stale = False
            self._avoid = None
            self._generation += 1
            self._probe_due = asyncio.get_running_loop().time() + ROLE_CHECK_INTERVAL
            log.debug("subscribing to %s on %s", self._channels[0].decode(), node.name)

    async def _teardown(self, *, stale: bool) -> None:
        """Close the connection; the next call subscribes again."""
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        self._ready = False
        self._stale = self._stale or stale
        if pubsub is not None and client is not None:
            await _close(pubsub, client)

    # ------------------------------------------------------------------ reading

    async def next(self, timeout: float) -> Message | None:
        if self._closed:
            raise BackendError("the subscription is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        redirects = 0
        while True:
            if self._moved:
                await self._teardown(stale=True)
            if self._pubsub is None:
                await self._connect()
            pubsub = self._pubsub
            if pubsub is None:  # closed meanwhile
                raise BackendError("the subscription is closed")
            if loop.time() >= self._probe_due:
                self._check_role_soon()
            try:
                raw = await pubsub.get_message(timeout=max(0.0, deadline - loop.time()))
            except (redis.exceptions.MovedError, redis.exceptions.AskError) as exc:
                await self._teardown(stale=True)
                redirects += 1
                if redirects > _REDIRECTS:
                    raise _failed("subscribing", exc) from exc
                continue  # the slot map is read again: subscribe where the slot lives now
            except REDIS_ERRORS as exc:
                deliberate = self._moved or self._pubsub is not pubsub
                if not deliberate:
                    self._avoid = self.node  # it may be gone: another one, if there is one
                await self._teardown(stale=True)
                if deliberate:
                    continue  # closed to move it (the probe) or by drop(): subscribe again
                raise _failed("reading the subscription", exc) from exc
            if raw is not None:
                msg = await self._message(raw)
                if msg is not None:
                    return msg
            if loop.time() >= deadline:
                return None

    async def _message(self, raw: Mapping[str, Any]) -> Message | None:
        kind = raw["type"]
        if kind == "smessage":
            which = self._kinds.get(raw["channel"])
            return None if which is None else Message(which, raw["data"])
        if kind == "pong":
            data = raw["data"]
            return Message("pong", data if isinstance(data, bytes) else b"")
        if kind == "ssubscribe":
            self._confirmed.add(raw["channel"])
            if len(self._confirmed) >= len(self._channels) and not self._ready:
                self._ready = True
                return Message("subscribed")
            return None
        if kind == "sunsubscribe":  # we never unsubscribe: the server did (the slot moved)
            log.info("the server unsubscribed %s (its slot moved or its node was demoted)",
                     self._channels[0].decode(), extra={"action": "unsubscribed"})
            await self._teardown(stale=True)
            channel = raw["channel"]
            return Message("unsubscribed", channel if isinstance(channel, bytes) else b"")
        return None

    # ------------------------------------------------------------------ liveness

    async def ping(self) -> None:
        """PING on the subscribed connection (the reply comes as ``pong``), and check in the
        background that the node still holds the place in the shard it had when subscribing."""
        if self._closed:
            raise BackendError("the subscription is closed")
        if self._pubsub is None or self._moved:
            await self._teardown(stale=self._moved)
            await self._connect()
        pubsub = self._pubsub
        if pubsub is None:
            raise BackendError("the subscription is closed")
        try:
            await pubsub.ping(HEARTBEAT)
        except REDIS_ERRORS as exc:
            self._avoid = self.node
            await self._teardown(stale=True)
            raise _failed("pinging the subscription", exc) from exc
        self._check_role_soon()

    def _check_role_soon(self) -> None:
        """Start a ROLE check in the background unless one runs."""
        self._probe_due = asyncio.get_running_loop().time() + ROLE_CHECK_INTERVAL
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._check_role(self._generation))

    async def _check_role(self, generation: int) -> None:
        node = self._node
        if node is None:
            return
        try:
            reply = await asyncio.wait_for(node.execute_command("ROLE"),
                                           self._t.settings.socket_timeout)
            role = _role(reply)
        except REDIS_ERRORS as exc:  # asyncio.TimeoutError is an OSError
            log.debug("checking the role of %s failed: %s", node.name, describe_error(exc))
            return  # the subscribed link fails too if the node is gone
        if generation != self._generation or role == self._role or self._closed:
            return
        log.info("%s changed role (%s, was %s): subscribing again", node.name,
                 role[0].decode(), self._role[0].decode() if self._role else "?",
                 extra={"action": "failover"})
        self._moved = True
        pubsub = self._pubsub
        conn = pubsub.connection if pubsub is not None else None
        if conn is not None:  # wake a reader blocked on it: it reconnects
            try:
                await conn.disconnect(nowait=True)
            except REDIS_ERRORS as exc:
                log.debug("closing the pubsub link failed: %s", describe_error(exc))

    async def drop(self) -> None:
        await self._teardown(stale=True)

    async def aclose(self) -> None:
        self._closed = True
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        await self._teardown(stale=False)


async def _close(pubsub: PubSub, client: aioredis.Redis) -> None:
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    except REDIS_ERRORS as exc:
        log.debug("closing the pubsub link failed: %s", describe_error(exc))
