"""The transport seam: what the layers above need from a server, as raw bytes and field maps.

A transport moves bytes; `hotreload.wire` gives them meaning. Every method either returns raw data
or raises `BackendError` (the driver's error chained with ``raise ... from exc``); a key of the
wrong type surfaces as a `BackendError` carrying the server's ``WRONGTYPE`` message, and the
caller decides about recovery. Nothing above the transport imports a Redis driver.

Implementations: `hotreload.transport.redis.RedisTransport` (one Redis server),
`hotreload.transport.sentinel.SentinelTransport` (a master behind Redis Sentinel),
`hotreload.transport.cluster.ClusterTransport` (Redis Cluster) and
`hotreload.transport.memory.MemoryTransport` (the same semantics in-process, for tests and the
demo). The numbered sections cited below are those of docs/protocol.md.

**Replica reads.** A transport may serve reads from replicas (a cluster with
``read_from_replicas``). A replica lags its primary: what it returns is a state the namespace
had, never one it will not have, but possibly an older one (an absent head included, right after
the replica restarted). Every read that feeds a decision takes ``primary=True`` to read the
primary instead: a caller that finds the server *behind* what it holds or was told (an event's
version, a log that does not reach the version it needs, a head older than its own, no head at
all) reads again with ``primary=True`` before it concludes anything, and a publisher reads its
own state (catch-up, §7.2) with ``primary=True``. `Transport.head_token` always reads the
primary. On a transport without replica reads the flag changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

__all__ = [
    "HEAD_PROTOCOL",
    "CacheStore",
    "Commit",
    "CommitResult",
    "Message",
    "RawHead",
    "RawLeaves",
    "RawLoad",
    "RawSurvey",
    "Subscription",
    "Transport",
    "status_index",
    "status_key",
]

#: The head's ``protocol`` field a "next" commit requires (§7.1), as stored.
HEAD_PROTOCOL: Final = "2"


def status_index(prefix: str) -> str:
    """The sorted set listing the daemons' status records (member: name, score: expiry in
    Unix ms). Its hash tag puts it and every record in one cluster slot."""
    return f"{prefix}:{{daemons}}"


def status_key(prefix: str, name: str) -> str:
    """The status record of daemon ``name`` (beside `status_index`, in its slot)."""
    return f"{prefix}:{{daemons}}:daemon:{name}"


@dataclass(frozen=True, slots=True)
class RawLoad:
    """One atomic read for a (re)load (§8 step 2)."""

    meta: dict[bytes, bytes]
    """HGETALL of the head (``{}``: absent)."""
    checkpoint: dict[bytes, bytes]
    """HGETALL of the checkpoint (``{}``: absent, or not a hash)."""
    tail: list[bytes]
    """The change-log events (field ``e``) after the checkpoint's version up to the head's,
    oldest first, at most ``max_tail + 1`` of them; empty when the checkpoint is absent, of
    another epoch, not behind the head, or when the log is not a stream. An entry without an
    ``e`` field is returned as ``b""``."""
    inv: dict[bytes, bytes]
    """HGETALL of the invalidation head."""
    legacy: dict[bytes, bytes]
    """HGETALL of the protocol-1 snapshot, read only when the head is absent (§13)."""


@dataclass(frozen=True, slots=True)
class RawLeaves:
    """One atomic read of the whole state: the head and the leaves (§7.2, §8 step 2)."""

    meta: dict[bytes, bytes]
    leaves: dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class RawSurvey:
    """What a namespace's keys hold, read without judging it (for a repair): each key's type
    (``"none"`` when absent) and, for those that are hashes, their fields."""

    types: dict[str, str]
    """``meta``, ``leaves``, ``checkpoint``, ``log`` -> the Redis type of that key."""
    meta: dict[bytes, bytes]
    leaves: dict[bytes, bytes]
    checkpoint: dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class RawHead:
    """The head's and the invalidation head's identifying fields, raw (None: absent)."""

    meta_epoch: bytes | None
    meta_version: bytes | None
    meta_checksum: bytes | None
    inv_epoch: bytes | None
    inv_seq: bytes | None


@dataclass(frozen=True, slots=True)
class Commit:
    """One publish: §7.1 (mode ``"next"``) or §7.3 (mode ``"new"``).

    ``expect``: for ``"next"`` the ``(epoch, version)`` the publisher holds (compared as strings
    with the head's, whose ``protocol`` must also be `HEAD_PROTOCOL`); for ``"new"`` the token
    `Transport.head_token` returned, unchanged. ``meta`` holds the head's fields to write (a
    value ``""`` deletes the field, e.g. ``canary``); the transport itself writes ``version`` =
    `version`. ``event`` is appended to the change log with id ``<version>-0`` (keeping about
    ``log_maxlen`` entries) and published on the config channel. ``checkpoint`` (mode ``"new"``
    only) is written with the state.
    """

    mode: Literal["next", "new"]
    expect: tuple[str, ...]
    meta: Mapping[str, str]
    sets: Mapping[str, str]
    deletes: Sequence[str]
    event: bytes
    version: int
    log_maxlen: int
    checkpoint: Mapping[str, str | bytes] | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What a commit (or an invalidation send) did.

    ``ok``: written. ``epoch``/``version`` (for invalidations: the invalidation epoch and
    ``seq``): the head's after the write, or as found when not written (None: absent, or a
    version that is not a decimal number). ``protocol``: on a conflict, the head's ``protocol``
    field as found (None: absent); a conflict with the very epoch and version expected means the
    head's protocol is not `HEAD_PROTOCOL`. ``receivers``: subscribers the event reached.
    """

    ok: bool
    epoch: str | None
    version: int | None
    receivers: int = 0
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """What a `Subscription` yields.

    ``subscribed``: both channels are confirmed after a (re)connect: messages may have been lost
    before it, resync (§8 step 1). ``config`` / ``invalidate``: an event's raw bytes, from the
    config or the invalidation channel. ``pong``: the reply to `Subscription.ping`.
    ``unsubscribed``: the server dropped one of our subscriptions (``data``: the channel); the
    next `Subscription.next` subscribes again and yields ``subscribed``.
    """

    kind: Literal["subscribed", "config", "invalidate", "pong", "unsubscribed"]
    data: bytes = field(default=b"")


class Subscription(Protocol):
    """One connection subscribed to a namespace's config and invalidation channels."""

    async def next(self, timeout: float) -> Message | None:
        """The next message, or None after ``timeout`` seconds without one. Subscribes (and
        re-subscribes after a drop) by itself; yields ``subscribed`` once both channels are
        confirmed after each (re)connect."""
        ...

    async def ping(self) -> None:
        """Send a PING on the subscribed connection: its reply comes as a ``pong`` message."""
        ...

    async def drop(self) -> None:
        """Close the connection: the next `next` reconnects and re-subscribes."""
        ...

    async def aclose(self) -> None: ...

    @property
    def connected(self) -> bool:
        """The link is up and both channels are confirmed."""
        ...


class CacheStore(Protocol):
    """The L2 of one named cache of a namespace, with fenced fills (docs/cache.md)."""

    async def read(self, key: str) -> tuple[bytes | None, tuple[bytes, bytes]]:
        """The stored value (None: absent) and the generations a later `fill` must match."""
        ...

    async def fill(self, key: str, payload: bytes, gens: tuple[bytes, bytes],
                   ttl: float) -> bool:
        """Store ``payload`` unless the key was invalidated since `read` returned ``gens``."""
        ...

    async def put(self, key: str, payload: bytes, ttl: float) -> None:
        """Store ``payload`` unconditionally, fencing the fills in flight."""
        ...

    async def invalidate(self, keys: Sequence[str]) -> None:
        """Give each key a new generation and delete its value, atomically."""
        ...

    async def invalidate_prefix(self, prefix: str) -> int:
        """Fence every fill in flight, then delete the values whose key starts with ``prefix``;
        returns how many were deleted."""
        ...


class Transport(Protocol):
    """Everything hotreload asks of a server. ``ns`` is a namespace name (§1)."""

    prefix: str

    def describe(self) -> str:
        """The server's address, secrets redacted."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...

    async def head_token(self, ns: str) -> tuple[str, ...]:
        """The head as observed on the primary, for a mode ``"new"`` `Commit`: its type and raw
        ``protocol``, ``epoch`` and ``version`` fields (absent included). Opaque: pass it back
        unchanged."""
        ...

    async def load(self, ns: str, *, max_tail: int, primary: bool = False) -> RawLoad:
        """One atomic read of the head, checkpoint, log tail and invalidation head (§8 step 2).
        ``primary``: see *Replica reads* above (also for the methods below)."""
        ...

    async def load_leaves(self, ns: str, *, primary: bool = False) -> RawLeaves:
        """One atomic read of the head with every leaf."""
        ...

    async def head(self, ns: str, *, primary: bool = False) -> RawHead:
        """The head's epoch, version and checksum and the invalidation head, one round trip."""
        ...

    async def survey(self, ns: str) -> RawSurvey:
        """One atomic read of the head, leaves and checkpoint whatever their types (never a
        ``WRONGTYPE`` error: a key that is not a hash reads as ``{}``, its type says why)."""
        ...

    async def read_log(self, ns: str, first: int, last: int | None = None, *,
                       count: int | None = None, newest_first: bool = False,
                       primary: bool = False) -> list[bytes]:
        """The change-log events of versions ``first``..``last`` (None: the newest), at most
        ``count`` of them, oldest first (or newest first)."""
        ...

    async def read_invalidation_log(self, ns: str, first: int, last: int, *,
                                    primary: bool = False) -> list[bytes]:
        """The invalidation events of seq ``first``..``last``, oldest first."""
        ...

    async def commit(self, ns: str, commit: Commit) -> CommitResult:
        """Publish atomically (§7.1 or §7.3)."""
        ...

    async def write_checkpoint(self, ns: str, epoch: str, version: int,
                               fields: Mapping[str, str | bytes]) -> bool:
        """Replace the checkpoint with ``fields`` if the head's epoch is ``epoch`` and the
        stored checkpoint is not newer (§7.4); True if written."""
        ...

    async def send_invalidation(self, ns: str, *, expect: tuple[str, int] | None, epoch: str,
                                seq: int, event: bytes, log_maxlen: int) -> CommitResult:
        """§9: check the invalidation head is ``expect`` (None: absent, creating it), write
        ``epoch``/``seq``, append ``event`` to the invalidation log and publish it."""
        ...

    async def subscribers(self, ns: str) -> int:
        """How many connections listen on the namespace's config channel (on a cluster: on
        every node of its shard)."""
        ...

    def subscription(self, ns: str) -> Subscription: ...

    def cache_store(self, ns: str, name: str) -> CacheStore: ...

    async def write_presence(self, ns: str, instance: str, record: bytes,
                             ttl: float) -> RawHead:
        """Write this instance's presence record (§11) and read the head, one round trip."""
        ...

    async def read_presence(self, ns: str) -> list[bytes]:
        """The records of every instance whose presence has not expired."""
        ...

    async def remove_presence(self, ns: str, instance: str) -> None: ...

    async def write_status(self, name: str, doc: bytes, ttl: float) -> None:
        """Write a daemon's status document, expiring after ``ttl`` seconds."""
        ...

    async def read_statuses(self) -> list[bytes]:
        """The status documents of every daemon of this prefix that has not expired."""
        ...

    async def delete_status(self, name: str) -> None: ...

    async def purge(self, ns: str) -> int:
        """Delete every key of the namespace (``<prefix>:{<ns>}:*``: settings, logs, presence,
        L2 caches); returns how many. For throwaway namespaces (the demo, tests)."""
        ...

    async def retire_legacy(self, ns: str, notice: bytes, ttl: float) -> int:
        """§13: mark the protocol-1 snapshot (if any) as protocol 2, publish ``notice`` on the
        protocol-1 channel, and let the protocol-1 keys expire after ``ttl`` seconds, atomically.
        Returns how many protocol-1 subscribers the notice reached."""
        ...
