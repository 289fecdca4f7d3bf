"""The data model of the memory transport: Redis's keys and value types, in a dict.

Only what the transport's scripts use: strings, hashes, sorted sets, streams (plus lists, as
garbage of the wrong type), per-key expiry, and Redis's rules around them (a key of another type
is a ``WRONGTYPE`` error; an emptied hash or sorted set disappears). Not thread-safe: the
`MemoryServer` holds a lock around every use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, TypeVar

T = TypeVar("T")

#: The message of a key of the wrong type, as Redis words it.
WRONGTYPE: Final = "WRONGTYPE Operation against a key holding the wrong kind of value"


class WrongType(Exception):
    """A command met a key of another type."""


class Hash(dict[bytes, bytes]):
    pass


class ZSet(dict[bytes, float]):
    pass


class List(list[bytes]):
    pass


class Stream:
    """Entries ``(ms, seq, fields)`` in id order, and the last id ever added."""

    __slots__ = ("entries", "last")

    def __init__(self) -> None:
        self.entries: list[tuple[int, int, dict[bytes, bytes]]] = []
        self.last = (0, 0)


Value = bytes | Hash | ZSet | List | Stream
TYPE_NAMES: Final[dict[type, str]] = {bytes: "string", Hash: "hash", ZSet: "zset",
                                      List: "list", Stream: "stream"}


def as_int(value: bytes | None) -> int | None:
    """A stored decimal number (None: absent or not a number)."""
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


class Store:
    """The keyspace of one server."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.data: dict[str, Value] = {}
        self.expiry: dict[str, float] = {}  # key -> Unix time

    def clear(self) -> None:
        self.data.clear()
        self.expiry.clear()

    def get(self, key: str) -> Value | None:
        expiry = self.expiry.get(key)
        if expiry is not None and expiry <= self.clock():
            self.delete(key)
            return None
        return self.data.get(key)

    def key_type(self, key: str) -> str:
        value = self.get(key)
        return "none" if value is None else TYPE_NAMES[type(value)]

    def typed(self, key: str, kind: type[T]) -> T | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, kind):  # the value types are unrelated classes
            raise WrongType(WRONGTYPE)
        return value

    def hash(self, key: str) -> Hash | None:
        return self.typed(key, Hash)

    def hash_w(self, key: str) -> Hash:
        """The hash at ``key``, created if absent (for a write)."""
        value = self.typed(key, Hash)
        if value is None:
            value = self.data[key] = Hash()
        return value

    def zset(self, key: str) -> ZSet | None:
        return self.typed(key, ZSet)

    def zset_w(self, key: str) -> ZSet:
        value = self.typed(key, ZSet)
        if value is None:
            value = self.data[key] = ZSet()
        return value

    def stream(self, key: str) -> Stream:
        """The stream at ``key`` (a new, unstored one if absent)."""
        return self.typed(key, Stream) or Stream()

    def delete(self, key: str) -> int:
        self.expiry.pop(key, None)
        return 0 if self.data.pop(key, None) is None else 1

    def drop_if_empty(self, key: str) -> None:
        value = self.data.get(key)
        if isinstance(value, dict) and not value:
            self.delete(key)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """SET (PX): a string replaces a value of any type."""
        self.data[key] = value
        if ttl is None:
            self.expiry.pop(key, None)
        else:
            self.expiry[key] = self.clock() + ttl

    def expire(self, key: str, ttl: float) -> None:
        if self.get(key) is not None:
            self.expiry[key] = self.clock() + ttl

    def incr(self, key: str) -> bytes:
        value = str((as_int(self.typed(key, bytes)) or 0) + 1).encode()
        self.data[key] = value  # INCR keeps an expiry; the keys incremented here have none
        return value

    def hmget(self, key: str, *fields: str) -> list[bytes | None]:
        h = self.hash(key)
        return [None if h is None else h.get(f.encode()) for f in fields]

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.hash(key) or {})

    def put_hash(self, key: str, fields: Mapping[str, str | bytes]) -> None:
        """Replace ``key`` with a hash of ``fields`` (nothing when empty)."""
        self.delete(key)
        if fields:
            self.data[key] = Hash({f.encode(): _bytes(v) for f, v in fields.items()})

    def append(self, key: str, version: int, event: bytes, maxlen: int) -> None:
        """XADD MAXLEN maxlen <version>-0 e event; a log whose last id is not older is started
        anew (as the scripts do)."""
        log = self.stream(key)
        if log.last >= (version, 0):
            self.delete(key)
            log = Stream()
        self.data[key] = log
        log.entries.append((version, 0, {b"e": event}))
        log.last = (version, 0)
        if len(log.entries) > maxlen:
            del log.entries[:len(log.entries) - maxlen]

    def xadd_raw(self, key: str, version: int, fields: Mapping[bytes, bytes]) -> None:
        """Add an entry ``<version>-0`` whatever the stream's top is (tests)."""
        log = self.stream(key)
        self.data[key] = log
        log.entries.append((version, 0, dict(fields)))
        log.entries.sort(key=lambda e: (e[0], e[1]))
        log.last = max(log.last, (version, 0))

    def range(self, key: str, first: int, last: int | None, count: int | None,
              newest_first: bool = False) -> list[bytes]:
        """The ``e`` fields of entries ``first``..``last`` (XRANGE / XREVRANGE with COUNT)."""
        out = [f.get(b"e", b"") for ms, _seq, f in self.stream(key).entries
               if ms >= first and (last is None or ms <= last)]
        if newest_first:
            out.reverse()
        return out if count is None else out[:count]

    def index_write(self, index: str, member: str, key: str, record: bytes,
                    ttl: float) -> None:
        """SET key record PX ttl; ZADD index expiry-ms member; drop the index's past members."""
        now = int(self.clock() * 1000)
        zset = self.zset_w(index)
        self.set(key, record, ttl)
        zset[member.encode()] = float(now + max(1, int(ttl * 1000)))
        for name in [m for m, score in zset.items() if score < now]:
            del zset[name]
        self.drop_if_empty(index)

    def index_remove(self, index: str, member: str, key: str) -> None:
        self.delete(key)
        zset = self.zset(index)
        if zset is not None:
            zset.pop(member.encode(), None)
            self.drop_if_empty(index)

    def index_read(self, index: str, key_of: Callable[[str], str]) -> list[bytes]:
        """The records of an index's members whose expiry is not past, soonest first."""
        zset: Mapping[bytes, float] = self.zset(index) or {}
        now = int(self.clock() * 1000)
        out: list[bytes] = []
        for _score, member in sorted((s, m) for m, s in zset.items() if s >= now):
            value = self.typed(key_of(member.decode()), bytes)
            if value is not None:
                out.append(value)
        return out


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
