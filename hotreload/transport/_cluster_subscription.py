"""`ClusterSubscription`: sharded Pub/Sub on one node of a namespace's shard, following the
shard through failovers and resharding (see `hotreload.transport.cluster`)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot

from ..errors import BackendError
from ._client import REDIS_ERRORS, describe_error
from ._client import failed as _failed
from .base import Message
from .redis import HEARTBEAT

if TYPE_CHECKING:
    from .cluster import ClusterTransport

__all__ = ["ROLE_CHECK_INTERVAL", "ClusterSubscription", "choose_node"]

log = logging.getLogger("hotreload.transport")

#: Attempts of one `ClusterSubscription.next` to follow MOVED/ASK replies to SSUBSCRIBE.
_REDIRECTS: Final = 3
#: A subscription checks its node's ROLE at most this often (seconds) while it is read, and at
#: every ping: a replica promoted after its primary died unsubscribes nobody.
ROLE_CHECK_INTERVAL: Final = 1.0


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
        # The cluster client's current object for the node: one a refresh dropped (a replica
        # that was resyncing, say) would open connections nobody closes.
        node = self._t.cluster.get_node(node_name=self._node.name) if self._node else None
        if node is None:
            return  # not in the slot map now: the subscribed link tells if it is gone
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
    for step in (pubsub.aclose, client.aclose):  # the client even if the pubsub fails
        try:
            await step()
        except REDIS_ERRORS as exc:
            log.debug("closing the pubsub link failed: %s", describe_error(exc))
