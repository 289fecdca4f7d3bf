"""`MemoryServer` and `MemoryTransport`: the transport's semantics in-process (tests, the demo).

A `MemoryServer` holds the keys (strings, hashes, sorted sets, streams, with expiry) and the
channels of one "Redis"; each `MemoryTransport` is a client of it. Every operation is atomic, as
the Redis scripts are, and follows them step by step (same checks, same order, same replies).

Test controls on the server: `MemoryServer.cut` (drop a subscription's link: messages published
until it re-subscribes are lost), `freeze`/`thaw` (a black hole: calls hang, subscriptions hear
nothing), `lose_data` (a restart without persistence), `fail_next` (the next calls fail as if the
connection were refused) and `unsubscribe` (the server unsubscribes a subscription). A server
may be shared by event loops of several threads.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from ..errors import BackendError
from ..wire.names import DEFAULT_PREFIX, Keys, check_name, keys_for, legacy_keys_for
from .base import HEAD_PROTOCOL, Commit, CommitResult, Message, RawHead, RawLeaves, RawLoad

__all__ = ["MemoryCacheStore", "MemoryServer", "MemorySubscription", "MemoryTransport"]

T = TypeVar("T")

#: The message of a key of the wrong type, as Redis words it.
WRONGTYPE: Final = "WRONGTYPE Operation against a key holding the wrong kind of value"
HEARTBEAT: Final = b"hotreload-heartbeat"
GENERATION_TTL: Final = 3600.0
_ids = itertools.count(1)


class _Hash(dict[bytes, bytes]):
    pass


class _ZSet(dict[bytes, float]):
    pass


class _List(list[bytes]):
    pass


class _Stream:
    __slots__ = ("entries", "last")

    def __init__(self) -> None:
        self.entries: list[tuple[int, int, dict[bytes, bytes]]] = []
        self.last = (0, 0)


_Value = bytes | _Hash | _ZSet | _List | _Stream
_TYPES: Final[dict[type, str]] = {bytes: "string", _Hash: "hash", _ZSet: "zset",
                                  _List: "list", _Stream: "stream"}


class _WrongType(Exception):
    pass


def _b(value: str | bytes | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _int(value: bytes | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def _mark(value: bytes | None) -> str:
    return "" if value is None else "=" + value.decode("latin-1")


class MemoryServer:
    """An in-process stand-in for one Redis server."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.calls = 0  # round trips served (each transport call is one)
        self._data: dict[str, _Value] = {}
        self._expiry: dict[str, float] = {}
        self._channels: dict[str, set[MemorySubscription]] = {}
        self._subscriptions: set[MemorySubscription] = set()
        self._lock = threading.RLock()
        self._frozen = False
        self._thaw: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._failures = 0
        self._id = next(_ids)

    def transport(self, prefix: str = DEFAULT_PREFIX) -> MemoryTransport:
        return MemoryTransport(self, prefix=prefix)

    def listen(self, channel: str) -> MemorySubscription:
        """A subscription to any one channel (its messages come as ``config`` messages)."""
        return MemorySubscription(self, {channel: "config"})

    # ------------------------------------------------------------------ test controls

    def cut(self, subscription: MemorySubscription | None = None) -> None:
        """Drop the link of ``subscription`` (of every subscription by default): its next
        `MemorySubscription.next` re-subscribes and yields ``subscribed``; what is published
        meanwhile never reaches it."""
        with self._lock:
            for sub in [subscription] if subscription is not None else list(self._subscriptions):
                self._detach(sub)
                sub._queue.clear()
                sub._resubscribe = True
                sub._wake()

    def unsubscribe(self, subscription: MemorySubscription) -> None:
        """Unsubscribe ``subscription`` server-side (as a sharded-channel slot move does)."""
        with self._lock:
            self._detach(subscription)
            subscription._queue.append(
                Message("unsubscribed", next(iter(subscription._kinds)).encode()))
            subscription._wake()

    def freeze(self) -> None:
        """Black-hole the server: calls hang until `thaw`; subscriptions hear nothing."""
        with self._lock:
            self._frozen = True

    def thaw(self) -> None:
        with self._lock:
            self._frozen = False
            waiters, self._thaw = self._thaw, []
            for sub in self._subscriptions:
                sub._wake()
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def lose_data(self) -> None:
        """A restart without persistence: every key is gone and every link is cut."""
        with self._lock:
            self._data.clear()
            self._expiry.clear()
        self.cut()

    def fail_next(self, count: int = 1) -> None:
        """Make the next ``count`` calls (commands, pings, subscription connects) fail with a
        `BackendError`, as a refused connection does."""
        with self._lock:
            self._failures += count

    # ------------------------------------------------------------------ raw access (tests)

    def key_type(self, key: str) -> str:
        with self._lock:
            value = self._get(key)
            return "none" if value is None else _TYPES[type(value)]

    def put(self, key: str, value: bytes | Mapping[bytes, bytes] | list[bytes]) -> None:
        """Store a raw value: bytes (a string), a mapping (a hash) or a list (a list)."""
        with self._lock:
            self._expiry.pop(key, None)
            if isinstance(value, bytes):
                self._data[key] = value
            elif isinstance(value, list):
                self._data[key] = _List(value)
            else:
                self._data[key] = _Hash({_b(f): _b(v) for f, v in value.items()})

    def xadd(self, key: str, version: int, fields: Mapping[bytes, bytes]) -> None:
        """Append an entry with id ``<version>-0`` to a stream, whatever its top is."""
        with self._lock:
            log = self._stream(key, create=True)
            log.entries.append((version, 0, dict(fields)))
            log.entries.sort(key=lambda e: (e[0], e[1]))
            log.last = max(log.last, (version, 0))

    def raw(self, key: str) -> Any:
        """A copy of the value at ``key`` (None: absent)."""
        with self._lock:
            value = self._get(key)
            if isinstance(value, _Stream):
                return [(f"{ms}-{seq}".encode(), dict(f)) for ms, seq, f in value.entries]
            if isinstance(value, dict):
                return dict(value)
            return list(value) if isinstance(value, list) else value

    def keys(self, pattern: str = "*") -> list[str]:
        with self._lock:
            return sorted(k for k in list(self._data) if self._get(k) is not None
                          and fnmatch.fnmatchcase(k, pattern))

    def delete(self, *keys: str) -> int:
        with self._lock:
            return sum(self._delete(k) for k in keys)

    # ------------------------------------------------------------------ plumbing

    async def _gate(self) -> None:
        """One round trip: hang while frozen, fail while failures are due."""
        if self._frozen:
            await self._wait_thaw()
        self._check_failure()

    def _check_failure(self) -> None:
        with self._lock:
            self.calls += 1
            if self._failures > 0:
                self._failures -= 1
                raise BackendError(f"{self.describe()}: connection refused (injected failure)")

    async def _wait_thaw(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._frozen:
                return
            self._thaw.append((loop, fut))
        await fut

    def describe(self) -> str:
        return f"memory://server-{self._id}"

    def _get(self, key: str) -> _Value | None:
        expiry = self._expiry.get(key)
        if expiry is not None and expiry <= self.clock():
            self._delete(key)
            return None
        return self._data.get(key)

    def _typed(self, key: str, kind: type[T]) -> T | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, kind):  # the value types are unrelated classes
            raise _WrongType(WRONGTYPE)
        return value

    def _hash(self, key: str) -> _Hash | None:
        return self._typed(key, _Hash)

    def _hash_w(self, key: str) -> _Hash:
        """The hash at ``key``, created if absent (for a write)."""
        value = self._typed(key, _Hash)
        if value is None:
            value = self._data[key] = _Hash()
        return value

    def _stream(self, key: str, *, create: bool = False) -> _Stream:
        value = self._typed(key, _Stream)
        if value is None:
            value = _Stream()
            if create:
                self._data[key] = value
        return value

    def _zset(self, key: str) -> _ZSet | None:
        return self._typed(key, _ZSet)

    def _zset_w(self, key: str) -> _ZSet:
        value = self._typed(key, _ZSet)
        if value is None:
            value = self._data[key] = _ZSet()
        return value

    def _delete(self, key: str) -> int:
        self._expiry.pop(key, None)
        return 0 if self._data.pop(key, None) is None else 1

    def _drop_if_empty(self, key: str) -> None:
        value = self._data.get(key)
        if isinstance(value, dict) and not value:
            self._delete(key)

    def _set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._data[key] = value
        if ttl is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = self.clock() + ttl

    def _hmget(self, key: str, *fields: str) -> list[bytes | None]:
        h = self._hash(key)
        return [None if h is None else h.get(f.encode()) for f in fields]

    def _hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self._hash(key) or {})

    def _append(self, key: str, version: int, event: bytes, maxlen: int) -> None:
        """XADD MAXLEN maxlen <version>-0 e event; a log whose top is not older is started
        anew (as the scripts do)."""
        log = self._stream(key)
        if log.last >= (version, 0):
            self._delete(key)
            log = self._stream(key)
        self._data[key] = log
        log.entries.append((version, 0, {b"e": event}))
        log.last = (version, 0)
        if len(log.entries) > maxlen:
            del log.entries[:len(log.entries) - maxlen]

    def _range(self, key: str, first: int, last: int | None, count: int | None,
               newest_first: bool = False) -> list[bytes]:
        log = self._stream(key)
        out = [f.get(b"e", b"") for ms, _seq, f in log.entries
               if ms >= first and (last is None or ms <= last)]
        if newest_first:
            out.reverse()
        return out if count is None else out[:count]

    def _publish(self, channel: str, data: bytes) -> int:
        subs = self._channels.get(channel, ())
        for sub in subs:
            sub._queue.append(Message(sub._kinds[channel], data))
            sub._wake()
        return len(subs)

    def _attach(self, sub: MemorySubscription) -> None:
        for channel in sub._kinds:
            self._channels.setdefault(channel, set()).add(sub)

    def _detach(self, sub: MemorySubscription) -> None:
        sub._confirmed = False
        for channel in sub._kinds:
            subs = self._channels.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._channels[channel]

    def _live(self, index: str, key_of: Callable[[str], str]) -> list[bytes]:
        """The records of the members of an expiry index (score: expiry, Unix ms) that are
        not past, soonest expiry first."""
        zset: Mapping[bytes, float] = self._zset(index) or {}
        now = int(self.clock() * 1000)
        out: list[bytes] = []
        for _score, member in sorted((s, m) for m, s in zset.items() if s >= now):
            value = self._typed(key_of(member.decode()), bytes)
            if value is not None:
                out.append(value)
        return out


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MemoryTransport:
    """A client of a `MemoryServer`, with the semantics of `RedisTransport`."""

    def __init__(self, server: MemoryServer | None = None, *,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.server = server if server is not None else MemoryServer()
        self.prefix = check_name(prefix, "prefix")
        self._closed = False

    def keys(self, ns: str) -> Keys:
        return keys_for(ns, self.prefix)

    def describe(self) -> str:
        return self.server.describe()

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise BackendError(f"{what}: the transport is closed")
        server = self.server
        await server._gate()
        with server._lock:
            try:
                return fn(*args)
            except _WrongType as exc:
                raise BackendError(f"{what}: {exc}") from None

    async def ping(self) -> None:
        await self._call("pinging", lambda: None)

    async def aclose(self) -> None:
        self._closed = True

    # ------------------------------------------------------------------ reads

    async def head_token(self, ns: str) -> tuple[str, ...]:
        def run(k: Keys) -> tuple[str, ...]:
            value = self.server._get(k.meta)
            if type(value) is not _Hash:
                return (self.server.key_type(k.meta), "", "", "")
            return ("hash", *(_mark(value.get(f)) for f in (b"protocol", b"epoch", b"version")))
        return await self._call(f"reading the head of {ns!r}", run, self.keys(ns))

    async def load(self, ns: str, *, max_tail: int) -> RawLoad:
        def run(k: Keys) -> RawLoad:
            s = self.server
            meta = s._hgetall(k.meta)
            try:
                ck = s._hgetall(k.checkpoint)
            except _WrongType:
                ck = {}
            tail: list[bytes] = []
            mv, cv = _int(meta.get(b"version")), _int(ck.get(b"version"))
            epoch = meta.get(b"epoch")
            if (mv is not None and cv is not None and epoch is not None
                    and ck.get(b"epoch") == epoch and cv < mv):
                try:
                    tail = s._range(k.log, cv + 1, mv, max_tail + 1)
                except _WrongType:
                    tail = []
            inv = s._hgetall(k.inv)
            legacy = {} if meta else s._hgetall(legacy_keys_for(ns, self.prefix).snapshot)
            return RawLoad(meta, ck, tail, inv, legacy)
        return await self._call(f"loading {ns!r}", run, self.keys(ns))

    async def load_leaves(self, ns: str) -> RawLeaves:
        def run(k: Keys) -> RawLeaves:
            return RawLeaves(self.server._hgetall(k.meta), self.server._hgetall(k.leaves))
        return await self._call(f"loading the leaves of {ns!r}", run, self.keys(ns))

    def _head(self, k: Keys) -> RawHead:
        s = self.server
        return RawHead(*s._hmget(k.meta, "epoch", "version", "checksum"),
                       *s._hmget(k.inv, "epoch", "seq"))

    async def head(self, ns: str) -> RawHead:
        return await self._call(f"reading the head of {ns!r}", self._head, self.keys(ns))

    async def read_log(self, ns: str, first: int, last: int | None = None, *,
                       count: int | None = None, newest_first: bool = False) -> list[bytes]:
        return await self._call(f"reading the change log of {ns!r}", self.server._range,
                                self.keys(ns).log, first, last, count, newest_first)

    async def read_invalidation_log(self, ns: str, first: int, last: int) -> list[bytes]:
        return await self._call(f"reading the invalidation log of {ns!r}", self.server._range,
                                self.keys(ns).inv_log, first, last, None)

    async def subscribers(self, ns: str) -> int:
        channel = self.keys(ns).config_channel
        return await self._call("reading PUBSUB NUMSUB",
                                lambda: len(self.server._channels.get(channel, ())))

    # ------------------------------------------------------------------ writes

    async def commit(self, ns: str, commit: Commit) -> CommitResult:
        if commit.mode == "new" and len(commit.expect) != 4:
            raise ValueError("a 'new' commit expects the token head_token() returned")
        run = self._commit_next if commit.mode == "next" else self._commit_new
        return await self._call(f"publishing to {ns!r}", run, self.keys(ns), commit)

    def _commit_next(self, k: Keys, c: Commit) -> CommitResult:
        s = self.server
        protocol, epoch, version = s._hmget(k.meta, "protocol", "epoch", "version")
        if (protocol, epoch, version) != (HEAD_PROTOCOL.encode(), _b(c.expect[0]),
                                          _b(c.expect[1])):
            return CommitResult(False, _text(epoch), _int(version), protocol=_text(protocol))
        s._hash(k.leaves)  # type check before any write
        s._append(k.log, c.version, c.event, c.log_maxlen)
        leaves = s._hash_w(k.leaves)
        for key, text in c.sets.items():
            leaves[key.encode()] = text.encode()
        for key in c.deletes:
            leaves.pop(key.encode(), None)
        s._drop_if_empty(k.leaves)
        self._write_meta(k, c)
        receivers = s._publish(k.config_channel, c.event)
        return CommitResult(True, c.meta.get("epoch") or c.expect[0], c.version, receivers)

    def _commit_new(self, k: Keys, c: Commit) -> CommitResult:
        s = self.server
        value = s._get(k.meta)
        found: tuple[bytes | None, ...] = (None, None, None)
        if type(value) is _Hash:
            found = tuple(value.get(f) for f in (b"protocol", b"epoch", b"version"))
        token = (s.key_type(k.meta), *(_mark(v) for v in found))
        if token != tuple(c.expect):
            return CommitResult(False, _text(found[1]), _int(found[2]), protocol=_text(found[0]))
        for key in (k.meta, k.leaves, k.checkpoint, k.log):
            s._delete(key)
        if c.sets:
            s._data[k.leaves] = _Hash({f.encode(): v.encode() for f, v in c.sets.items()})
        self._write_meta(k, c)
        if c.checkpoint:
            s._data[k.checkpoint] = _Hash({f.encode(): _b(v) for f, v in c.checkpoint.items()})
        s._append(k.log, c.version, c.event, c.log_maxlen)
        receivers = s._publish(k.config_channel, c.event)
        return CommitResult(True, c.meta.get("epoch"), c.version, receivers)

    def _write_meta(self, k: Keys, c: Commit) -> None:
        meta = self.server._hash_w(k.meta)
        for name, value in c.meta.items():
            if value == "":
                meta.pop(name.encode(), None)
            else:
                meta[name.encode()] = value.encode()
        meta[b"version"] = str(c.version).encode()

    async def write_checkpoint(self, ns: str, epoch: str, version: int,
                               fields: Mapping[str, str | bytes]) -> bool:
        def run(k: Keys) -> bool:
            s = self.server
            if s._hmget(k.meta, "epoch")[0] != epoch.encode():
                return False
            cur_epoch, cur_version = s._hmget(k.checkpoint, "epoch", "version")
            stored = _int(cur_version)
            if cur_epoch == epoch.encode() and stored is not None and stored > version:
                return False
            s._delete(k.checkpoint)
            s._data[k.checkpoint] = _Hash({f.encode(): _b(v) for f, v in fields.items()})
            return True
        return await self._call(f"writing the checkpoint of {ns!r}", run, self.keys(ns))

    async def send_invalidation(self, ns: str, *, expect: tuple[str, int] | None, epoch: str,
                                seq: int, event: bytes, log_maxlen: int) -> CommitResult:
        def run(k: Keys) -> CommitResult:
            s = self.server
            cur_epoch, cur_seq = s._hmget(k.inv, "epoch", "seq")
            if expect is None:
                if cur_epoch is not None or cur_seq is not None:
                    return CommitResult(False, _text(cur_epoch), _int(cur_seq))
                s._delete(k.inv_log)
            elif (cur_epoch, cur_seq) != (expect[0].encode(), str(expect[1]).encode()):
                return CommitResult(False, _text(cur_epoch), _int(cur_seq))
            s._append(k.inv_log, seq, event, log_maxlen)
            inv = s._hash_w(k.inv)
            inv[b"epoch"], inv[b"seq"] = epoch.encode(), str(seq).encode()
            return CommitResult(True, epoch, seq, s._publish(k.inv_channel, event))
        return await self._call(f"sending an invalidation to {ns!r}", run, self.keys(ns))

    async def retire_legacy(self, ns: str, notice: bytes, ttl: float) -> int:
        def run() -> int:
            s = self.server
            old = legacy_keys_for(ns, self.prefix)
            snapshot = s._hash(old.snapshot)
            if snapshot is not None:
                snapshot[b"protocol"] = b"2"
            receivers = s._publish(old.channel, notice)
            for key in (old.snapshot, old.log):
                if s._get(key) is not None:
                    s._expiry[key] = s.clock() + ttl
            return receivers
        return await self._call(f"retiring the protocol-1 keys of {ns!r}", run)

    # ------------------------------------------------------------------ presence, status

    def _index_write(self, index: str, member: str, key: str, record: bytes,
                     ttl: float) -> None:
        s = self.server
        now = s.clock()
        s._typed(key, bytes)  # SET overwrites any type; ZADD does not
        zset = s._zset_w(index)
        s._set(key, record, ttl)
        zset[member.encode()] = float(int(now * 1000) + max(1, int(ttl * 1000)))
        for name in [m for m, score in zset.items() if score < int(now * 1000)]:
            del zset[name]
        s._drop_if_empty(index)

    def _index_remove(self, index: str, member: str, key: str) -> None:
        s = self.server
        s._delete(key)
        zset = s._zset(index)
        if zset is not None:
            zset.pop(member.encode(), None)
            s._drop_if_empty(index)

    async def write_presence(self, ns: str, instance: str, record: bytes,
                             ttl: float) -> RawHead:
        def run(k: Keys) -> RawHead:
            self._index_write(k.presence, instance, k.presence_record(instance), record, ttl)
            return self._head(k)
        return await self._call(f"writing the presence of {ns!r}", run, self.keys(ns))

    async def read_presence(self, ns: str) -> list[bytes]:
        k = self.keys(ns)
        return await self._call(f"reading the presence of {ns!r}", self.server._live,
                                k.presence, k.presence_record)

    async def remove_presence(self, ns: str, instance: str) -> None:
        k = self.keys(ns)
        await self._call(f"removing the presence of {ns!r}", self._index_remove, k.presence,
                         instance, k.presence_record(instance))

    def _status_key(self, name: str) -> str:
        return f"{self.prefix}:daemon:{name}"

    async def write_status(self, name: str, doc: bytes, ttl: float) -> None:
        await self._call("writing the daemon status", self._index_write,
                         f"{self.prefix}:daemons", name, self._status_key(name), doc, ttl)

    async def read_statuses(self) -> list[bytes]:
        return await self._call("reading the daemons' status", self.server._live,
                                f"{self.prefix}:daemons", self._status_key)

    async def delete_status(self, name: str) -> None:
        await self._call("deleting the daemon status", self._index_remove,
                         f"{self.prefix}:daemons", name, self._status_key(name))

    # ------------------------------------------------------------------ factories

    def subscription(self, ns: str) -> MemorySubscription:
        k = self.keys(ns)
        return MemorySubscription(self.server, {k.config_channel: "config",
                                                k.inv_channel: "invalidate"})

    def cache_store(self, ns: str, name: str) -> MemoryCacheStore:
        return MemoryCacheStore(self, self.keys(ns), name)


class MemorySubscription:
    """A subscription to a namespace's two channels on a `MemoryServer`."""

    def __init__(self, server: MemoryServer, channels: Mapping[str, Any]) -> None:
        self._server = server
        self._kinds = dict(channels)  # channel -> the kind of its messages
        self._queue: deque[Message] = deque()
        self._resubscribe = True  # (re)subscribe on the next `next`
        self._confirmed = False
        self._closed = False
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        with server._lock:
            server._subscriptions.add(self)

    @property
    def connected(self) -> bool:
        return self._confirmed and not self._resubscribe

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter[0].call_soon_threadsafe(_resolve, waiter[1])

    async def next(self, timeout: float) -> Message | None:
        if self._closed:
            raise BackendError("the subscription is closed")
        server = self._server
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with server._lock:
                if not server._frozen:
                    if self._resubscribe:
                        server._check_failure()
                        server._attach(self)
                        self._resubscribe = False
                        self._confirmed = True
                        return Message("subscribed")
                    if self._queue:
                        msg = self._queue.popleft()
                        if msg.kind == "unsubscribed":
                            self._resubscribe = True
                        return msg
                fut: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, fut)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await fut
            except TimeoutError:
                return None
            finally:
                with server._lock:
                    if self._waiter is not None and self._waiter[1] is fut:
                        self._waiter = None

    async def ping(self) -> None:
        if self._closed:
            raise BackendError("the subscription is closed")
        server = self._server
        server._check_failure()  # a PING on a frozen link is sent; its reply never comes
        with server._lock:
            self._queue.append(Message("pong", HEARTBEAT))
            self._wake()

    async def drop(self) -> None:
        self._server.cut(self)

    async def aclose(self) -> None:
        server = self._server
        with server._lock:
            self._closed = True
            server._detach(self)
            server._subscriptions.discard(self)
            self._queue.clear()
            self._wake()


class MemoryCacheStore:
    """The L2 of one named cache on a `MemoryServer` (docs/cache.md semantics)."""

    def __init__(self, transport: MemoryTransport, keys: Keys, name: str) -> None:
        self._t = transport
        self.value_prefix = keys.cache(name)
        self.gen_prefix = f"{keys.base}:cachegen:{name}:"
        self.epoch_key = f"{keys.base}:cacheepoch:{name}"
        self.counter_key = f"{keys.base}:cacheseq:{name}"

    def _incr(self, key: str) -> bytes:
        s = self._t.server
        value = str((_int(s._typed(key, bytes)) or 0) + 1).encode()
        s._data[key] = value  # INCR keeps a key's expiry; these keys have none
        return value

    async def read(self, key: str) -> tuple[bytes | None, tuple[bytes, bytes]]:
        def run() -> tuple[bytes | None, tuple[bytes, bytes]]:
            s = self._t.server
            value, gen, epoch = (s._typed(n, bytes) for n in (
                self.value_prefix + key, self.gen_prefix + key, self.epoch_key))
            return value, (gen or b"0", epoch or b"0")
        return await self._t._call("reading the L2 cache", run)

    async def fill(self, key: str, payload: bytes, gens: tuple[bytes, bytes],
                   ttl: float) -> bool:
        def run() -> bool:
            s = self._t.server
            if (s._typed(self.gen_prefix + key, bytes) or b"0") != gens[0]:
                return False
            if (s._typed(self.epoch_key, bytes) or b"0") != gens[1]:
                return False
            s._set(self.value_prefix + key, payload, ttl)
            return True
        return await self._t._call("filling the L2 cache", run)

    async def put(self, key: str, payload: bytes, ttl: float) -> None:
        def run() -> None:
            s = self._t.server
            s._set(self.gen_prefix + key, self._incr(self.counter_key), GENERATION_TTL)
            s._set(self.value_prefix + key, payload, ttl)
        await self._t._call("writing the L2 cache", run)

    async def invalidate(self, keys: Sequence[str]) -> None:
        if not keys:
            return

        def run() -> None:
            s = self._t.server
            for key in keys:
                s._set(self.gen_prefix + key, self._incr(self.counter_key), GENERATION_TTL)
                s._delete(self.value_prefix + key)
        await self._t._call("invalidating the L2 cache", run)

    async def invalidate_prefix(self, prefix: str) -> int:
        def run() -> int:
            s = self._t.server
            self._incr(self.epoch_key)
            start = self.value_prefix + prefix
            return sum(s._delete(k) for k in _matching(s, start))
        return await self._t._call("invalidating an L2 cache prefix", run)


def _matching(server: MemoryServer, start: str) -> Iterable[str]:
    return [k for k in list(server._data) if k.startswith(start) and server._get(k) is not None]
