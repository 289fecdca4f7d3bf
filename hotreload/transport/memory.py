"""`MemoryServer` and `MemoryTransport`: the transport's semantics in-process (tests, the demo).

A `MemoryServer` holds the keys (`hotreload.transport._store`) and the channels of one "Redis";
each `MemoryTransport` is a client of it. Every call is one atomic step, as a Redis script is,
and follows the scripts step by step (same checks, same order, same replies).

Test controls on the server: `MemoryServer.cut` (drop a subscription's link: messages published
until it re-subscribes are lost), `freeze`/`thaw` (a black hole: calls hang, subscriptions hear
nothing), `lose_data` (a restart without persistence), `fail_next` (the next calls fail as if the
connection were refused) and `unsubscribe` (the server unsubscribes a subscription). A server
may be shared by the event loops of several threads.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from ..errors import BackendError
from ..wire.names import DEFAULT_PREFIX, Keys, check_name, keys_for, legacy_keys_for
from ._memory_cache import MemoryCacheStore
from ._store import Hash, List, Store, WrongType, as_int
from .base import (
    HEAD_PROTOCOL,
    Commit,
    CommitResult,
    Message,
    RawHead,
    RawLeaves,
    RawLoad,
    RawSurvey,
    status_index,
    status_key,
)

__all__ = ["MemoryCacheStore", "MemoryServer", "MemorySubscription", "MemoryTransport"]

T = TypeVar("T")

HEARTBEAT: Final = b"hotreload-heartbeat"
_ids = itertools.count(1)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _mark(value: bytes | None) -> str:
    """A head field as the head token shows it (as the scripts' ``mark``)."""
    return "" if value is None else "=" + value.decode("latin-1")


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MemoryServer:
    """An in-process stand-in for one Redis server."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.store = Store(clock)
        self.calls = 0  # round trips served (each transport call is one)
        self._channels: dict[str, set[MemorySubscription]] = {}
        self._subscriptions: set[MemorySubscription] = set()
        self._lock = threading.RLock()
        self._frozen = False
        self._thaw: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._failures = 0
        self._down = False
        self._id = next(_ids)

    def describe(self) -> str:
        return f"memory://server-{self._id}"

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
            self.store.clear()
        self.cut()

    def set_down(self, down: bool = True) -> None:
        """While down, every call (commands, pings, subscription connects) fails with a
        `BackendError`, as a refused connection does; subscriptions are cut."""
        with self._lock:
            self._down = down
        if down:
            self.cut()

    def fail_next(self, count: int = 1) -> None:
        """Make the next ``count`` calls (commands, pings, subscription connects) fail with a
        `BackendError`, as a refused connection does."""
        with self._lock:
            self._failures += count

    # ------------------------------------------------------------------ raw access (tests)

    def key_type(self, key: str) -> str:
        with self._lock:
            return self.store.key_type(key)

    def put(self, key: str, value: bytes | Mapping[bytes, bytes] | list[bytes]) -> None:
        """Replace ``key`` with a string (bytes), a hash (a mapping) or a list."""
        with self._lock:
            self.store.delete(key)
            if isinstance(value, bytes):
                self.store.set(key, value)
            elif isinstance(value, list):
                self.store.data[key] = List(value)
            elif value:
                self.store.data[key] = Hash(value)

    def xadd(self, key: str, version: int, fields: Mapping[bytes, bytes]) -> None:
        """Add an entry with id ``<version>-0`` to a stream, whatever its top is."""
        with self._lock:
            self.store.xadd_raw(key, version, fields)

    def raw(self, key: str) -> Any:
        """A copy of the value at ``key`` (None: absent; a stream as ``[(id, fields)]``)."""
        with self._lock:
            value = self.store.get(key)
            if isinstance(value, (bytes, type(None))):
                return value
            if isinstance(value, dict):
                return dict(value)
            if isinstance(value, list):
                return list(value)
            return [(f"{ms}-{seq}".encode(), dict(f)) for ms, seq, f in value.entries]

    def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has to live (None: absent, or no expiry)."""
        with self._lock:
            expiry = self.store.expiry.get(key) if self.store.get(key) is not None else None
            return None if expiry is None else expiry - self.store.clock()

    def keys(self, pattern: str = "*") -> list[str]:
        with self._lock:
            return sorted(k for k in list(self.store.data) if self.store.get(k) is not None
                          and fnmatch.fnmatchcase(k, pattern))

    def delete(self, *keys: str) -> int:
        with self._lock:
            return sum(self.store.delete(k) for k in keys)

    # ------------------------------------------------------------------ plumbing

    async def _gate(self) -> None:
        """One round trip: hang while frozen, fail while failures are due."""
        if self._frozen:
            await self._wait_thaw()
        self._check_failure()

    def _check_failure(self) -> None:
        with self._lock:
            self.calls += 1
            if self._down:
                raise BackendError(f"{self.describe()}: connection refused (server down)"
                                   ) from ConnectionRefusedError("server down")
            if self._failures > 0:
                self._failures -= 1
                raise BackendError(f"{self.describe()}: connection refused (injected failure)"
                                   ) from ConnectionRefusedError("injected failure")

    async def _wait_thaw(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._frozen:
                return
            self._thaw.append((loop, fut))
        await fut

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
        """One round trip: ``fn(*args)`` atomically on the server's store."""
        if self._closed:
            raise BackendError(f"{what}: the transport is closed")
        server = self.server
        await server._gate()
        with server._lock:
            try:
                return fn(*args)
            except WrongType as exc:
                raise BackendError(f"{what}: {exc}") from None

    async def ping(self) -> None:
        await self._call("pinging", lambda: None)

    async def aclose(self) -> None:
        self._closed = True

    # ------------------------------------------------------------------ reads

    async def head_token(self, ns: str) -> tuple[str, ...]:
        def run(s: Store, k: Keys) -> tuple[str, ...]:
            value = s.get(k.meta)
            if not isinstance(value, Hash):
                return (s.key_type(k.meta), "", "", "")
            return ("hash", *(_mark(value.get(f)) for f in (b"protocol", b"epoch", b"version")))
        return await self._call(f"reading the head of {ns!r}", run, self.server.store,
                                self.keys(ns))

    async def load(self, ns: str, *, max_tail: int, primary: bool = False) -> RawLoad:
        def run(s: Store, k: Keys) -> RawLoad:
            meta = s.hgetall(k.meta)
            try:
                ck = s.hgetall(k.checkpoint)
            except WrongType:
                ck = {}
            tail: list[bytes] = []
            mv, cv = as_int(meta.get(b"version")), as_int(ck.get(b"version"))
            epoch = meta.get(b"epoch")
            if (mv is not None and cv is not None and epoch is not None
                    and ck.get(b"epoch") == epoch and cv < mv):
                try:
                    tail = s.range(k.log, cv + 1, mv, max_tail + 1)
                except WrongType:
                    tail = []
            inv = s.hgetall(k.inv)
            legacy = {} if meta else s.hgetall(legacy_keys_for(ns, self.prefix).snapshot)
            return RawLoad(meta, ck, tail, inv, legacy)
        return await self._call(f"loading {ns!r}", run, self.server.store, self.keys(ns))

    async def load_leaves(self, ns: str, *, primary: bool = False) -> RawLeaves:
        def run(s: Store, k: Keys) -> RawLeaves:
            return RawLeaves(s.hgetall(k.meta), s.hgetall(k.leaves))
        return await self._call(f"loading the leaves of {ns!r}", run, self.server.store,
                                self.keys(ns))

    def _head(self, k: Keys) -> RawHead:
        s = self.server.store
        return RawHead(*s.hmget(k.meta, "epoch", "version", "checksum"),
                       *s.hmget(k.inv, "epoch", "seq"))

    async def head(self, ns: str, *, primary: bool = False) -> RawHead:
        return await self._call(f"reading the head of {ns!r}", self._head, self.keys(ns))

    async def survey(self, ns: str) -> RawSurvey:
        def run(s: Store, k: Keys) -> RawSurvey:
            names = {"meta": k.meta, "leaves": k.leaves, "checkpoint": k.checkpoint,
                     "log": k.log}
            types = {what: s.key_type(key) for what, key in names.items()}
            hashes = {what: s.hgetall(key) if types[what] == "hash" else {}
                      for what, key in names.items()}
            return RawSurvey(types, hashes["meta"], hashes["leaves"], hashes["checkpoint"])
        return await self._call(f"surveying {ns!r}", run, self.server.store, self.keys(ns))

    async def read_log(self, ns: str, first: int, last: int | None = None, *,
                       count: int | None = None, newest_first: bool = False,
                       primary: bool = False) -> list[bytes]:
        return await self._call(f"reading the change log of {ns!r}", self.server.store.range,
                                self.keys(ns).log, first, last, count, newest_first)

    async def read_invalidation_log(self, ns: str, first: int, last: int, *,
                                    primary: bool = False) -> list[bytes]:
        return await self._call(f"reading the invalidation log of {ns!r}",
                                self.server.store.range, self.keys(ns).inv_log, first, last,
                                None)

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
        s = self.server.store
        protocol, epoch, version = s.hmget(k.meta, "protocol", "epoch", "version")
        if (protocol, epoch, version) != (HEAD_PROTOCOL.encode(), c.expect[0].encode(),
                                          c.expect[1].encode()):
            return CommitResult(False, _text(epoch), as_int(version), protocol=_text(protocol))
        s.hash(k.leaves)  # the checks before any write: the leaves' type, then the log's
        s.append(k.log, c.version, c.event, c.log_maxlen)
        leaves = s.hash_w(k.leaves)
        for key, text in c.sets.items():
            leaves[key.encode()] = text.encode()
        for key in c.deletes:
            leaves.pop(key.encode(), None)
        s.drop_if_empty(k.leaves)
        self._write_head(s, k, c)
        receivers = self.server._publish(k.config_channel, c.event)
        return CommitResult(True, c.meta.get("epoch") or c.expect[0], c.version, receivers)

    def _commit_new(self, k: Keys, c: Commit) -> CommitResult:
        s = self.server.store
        value = s.get(k.meta)
        found: tuple[bytes | None, ...] = (None, None, None)
        if isinstance(value, Hash):
            found = tuple(value.get(f) for f in (b"protocol", b"epoch", b"version"))
        if (s.key_type(k.meta), *(_mark(v) for v in found)) != tuple(c.expect):
            return CommitResult(False, _text(found[1]), as_int(found[2]),
                                protocol=_text(found[0]))
        for key in (k.meta, k.leaves, k.checkpoint, k.log):
            s.delete(key)
        s.put_hash(k.leaves, c.sets)
        self._write_head(s, k, c)
        s.put_hash(k.checkpoint, c.checkpoint or {})
        s.append(k.log, c.version, c.event, c.log_maxlen)
        receivers = self.server._publish(k.config_channel, c.event)
        return CommitResult(True, c.meta.get("epoch"), c.version, receivers)

    @staticmethod
    def _write_head(s: Store, k: Keys, c: Commit) -> None:
        meta = s.hash_w(k.meta)
        for name, value in c.meta.items():
            if value == "":
                meta.pop(name.encode(), None)
            else:
                meta[name.encode()] = value.encode()
        meta[b"version"] = str(c.version).encode()

    async def write_checkpoint(self, ns: str, epoch: str, version: int,
                               fields: Mapping[str, str | bytes]) -> bool:
        def run(s: Store, k: Keys) -> bool:
            if s.hmget(k.meta, "epoch")[0] != epoch.encode():
                return False
            stored_epoch, stored = s.hmget(k.checkpoint, "epoch", "version")
            newer = as_int(stored)
            if stored_epoch == epoch.encode() and newer is not None and newer > version:
                return False
            s.put_hash(k.checkpoint, fields)
            return True
        return await self._call(f"writing the checkpoint of {ns!r}", run, self.server.store,
                                self.keys(ns))

    async def send_invalidation(self, ns: str, *, expect: tuple[str, int] | None, epoch: str,
                                seq: int, event: bytes, log_maxlen: int) -> CommitResult:
        def run(s: Store, k: Keys) -> CommitResult:
            cur_epoch, cur_seq = s.hmget(k.inv, "epoch", "seq")
            if expect is None:
                if cur_epoch is not None or cur_seq is not None:
                    return CommitResult(False, _text(cur_epoch), as_int(cur_seq))
                s.delete(k.inv_log)
            elif (cur_epoch, cur_seq) != (expect[0].encode(), str(expect[1]).encode()):
                return CommitResult(False, _text(cur_epoch), as_int(cur_seq))
            s.append(k.inv_log, seq, event, log_maxlen)
            inv = s.hash_w(k.inv)
            inv[b"epoch"], inv[b"seq"] = epoch.encode(), str(seq).encode()
            return CommitResult(True, epoch, seq, self.server._publish(k.inv_channel, event))
        return await self._call(f"sending an invalidation to {ns!r}", run, self.server.store,
                                self.keys(ns))

    async def purge(self, ns: str) -> int:
        base = self.keys(ns).base + ":"

        def run(s: Store) -> int:
            return sum(s.delete(k) for k in list(s.data) if k.startswith(base))

        return await self._call(f"deleting the keys of {ns!r}", run, self.server.store)

    async def retire_legacy(self, ns: str, notice: bytes, ttl: float) -> int:
        def run(s: Store) -> int:
            old = legacy_keys_for(ns, self.prefix)
            snapshot = s.hash(old.snapshot)
            if snapshot is not None:
                snapshot[b"protocol"] = b"2"
            receivers = self.server._publish(old.channel, notice)
            s.expire(old.snapshot, ttl)
            s.expire(old.log, ttl)
            return receivers
        return await self._call(f"retiring the protocol-1 keys of {ns!r}", run,
                                self.server.store)

    # ------------------------------------------------------------------ presence, status

    async def write_presence(self, ns: str, instance: str, record: bytes,
                             ttl: float) -> RawHead:
        def run(k: Keys) -> RawHead:
            self.server.store.index_write(k.presence, instance, k.presence_record(instance),
                                          record, ttl)
            return self._head(k)
        return await self._call(f"writing the presence of {ns!r}", run, self.keys(ns))

    async def read_presence(self, ns: str) -> list[bytes]:
        k = self.keys(ns)
        return await self._call(f"reading the presence of {ns!r}",
                                self.server.store.index_read, k.presence, k.presence_record)

    async def remove_presence(self, ns: str, instance: str) -> None:
        k = self.keys(ns)
        await self._call(f"removing the presence of {ns!r}", self.server.store.index_remove,
                         k.presence, instance, k.presence_record(instance))

    def _status_key(self, name: str) -> str:
        return status_key(self.prefix, name)

    async def write_status(self, name: str, doc: bytes, ttl: float) -> None:
        await self._call("writing the daemon status", self.server.store.index_write,
                         status_index(self.prefix), name, self._status_key(name), doc, ttl)

    async def read_statuses(self) -> list[bytes]:
        return await self._call("reading the daemons' status", self.server.store.index_read,
                                status_index(self.prefix), self._status_key)

    async def delete_status(self, name: str) -> None:
        await self._call("deleting the daemon status", self.server.store.index_remove,
                         status_index(self.prefix), name, self._status_key(name))

    # ------------------------------------------------------------------ factories

    def subscription(self, ns: str) -> MemorySubscription:
        k = self.keys(ns)
        return MemorySubscription(self.server, {k.config_channel: "config",
                                                k.inv_channel: "invalidate"})

    def cache_store(self, ns: str, name: str) -> MemoryCacheStore:
        return MemoryCacheStore(self, self.keys(ns), name)


class MemorySubscription:
    """A subscription to some channels of a `MemoryServer` (a namespace's two, usually)."""

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
        server._check_failure()  # a PING on a frozen link is sent; its reply waits
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
