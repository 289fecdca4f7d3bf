"""`RedisTransport`: the transport over one Redis server (redis-py asyncio).

Commands share one connection pool; each `Subscription` holds its own connection. Every
connection has TCP keepalives and ``TCP_USER_TIMEOUT``, so a half-open link fails within seconds.
redis-py errors become `BackendError` here, with a one-line message that holds no secret.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from ..config import RedisSettings
from ..errors import BackendError
from ..wire.names import DEFAULT_PREFIX, Keys, check_name, keys_for, legacy_keys_for
from . import _scripts as S
from .base import HEAD_PROTOCOL, Commit, CommitResult, Message, RawHead, RawLeaves, RawLoad

__all__ = ["REDIS_ERRORS", "RedisCacheStore", "RedisSubscription", "RedisTransport",
           "build_client", "describe_error", "keepalive_options"]

log = logging.getLogger("hotreload.transport")

#: Errors of redis-py (and the socket layer) that mean "the server or the link failed".
REDIS_ERRORS: Final[tuple[type[BaseException], ...]] = (redis.exceptions.RedisError, OSError)

#: The payload of subscription PINGs (its reply comes back as a ``pong`` message).
HEARTBEAT: Final = b"hotreload-heartbeat"
#: How long a key's cache generation outlives its last invalidation (longer than any load).
GENERATION_TTL_MS: Final = 3_600_000
SCAN_COUNT: Final = 1000
_GLOB_SPECIAL: Final = frozenset("*?[]\\")
_PUBLISH: Final = "PUBLISH"


def keepalive_options(s: RedisSettings) -> dict[int, int]:
    """TCP options so that a half-open link fails within seconds, not minutes."""
    opts: dict[int, int] = {}
    for name, value in (
        ("TCP_KEEPIDLE", s.tcp_keepalive_idle),
        ("TCP_KEEPINTVL", s.tcp_keepalive_interval),
        ("TCP_KEEPCNT", s.tcp_keepalive_count),
        ("TCP_USER_TIMEOUT", s.tcp_user_timeout_ms),
    ):
        const = getattr(socket, name, None)
        if const is not None and value:
            opts[const] = value
    return opts


def build_client(s: RedisSettings, *, retries: int = 3) -> aioredis.Redis:
    """An asyncio client: keepalives, connect and socket timeouts, bounded jittered retries."""
    kwargs: dict[str, Any] = {
        "protocol": s.protocol,
        "max_connections": s.pool_size,
        "socket_connect_timeout": s.connect_timeout,
        "socket_timeout": s.socket_timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(s),
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries),
        "decode_responses": False,
    }
    if s.url is None and s.username:
        kwargs["username"] = s.username
    if s.tls or s.effective_url().startswith("rediss://"):
        if s.tls_ca_file:
            kwargs["ssl_ca_certs"] = s.tls_ca_file
        if s.tls_cert_file:
            kwargs["ssl_certfile"] = s.tls_cert_file
        if s.tls_key_file:
            kwargs["ssl_keyfile"] = s.tls_key_file
    try:
        return aioredis.Redis.from_url(s.effective_url(), **kwargs)
    except ValueError:
        # redis-py's message may quote part of the URL, password included: do not repeat it.
        raise BackendError(
            f"invalid Redis URL {s.display_url()}: cannot be parsed (percent-encode special "
            "characters such as @ : / # ? in the password)") from None


def describe_error(exc: BaseException) -> str:
    """A one-line description of a backend error that holds no secret."""
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def _failed(what: str, exc: BaseException) -> BackendError:
    return BackendError(f"{what}: {describe_error(exc)}")


def _pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _opt(value: Any) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    text = _text(value)
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def _result(reply: Sequence[Any], epoch: str | None = None) -> CommitResult:
    """A commit-like script's reply: {1, version, receivers} or {0, epoch, version, protocol}."""
    if int(reply[0]) == 1:
        return CommitResult(True, epoch, _int(reply[1]), int(reply[2]))
    return CommitResult(False, _text(reply[1]), _int(reply[2]),
                        protocol=_text(reply[3]) if len(reply) > 3 else None)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisTransport:
    """The transport over one Redis server. ``client``: share an existing client (not closed
    by `aclose`); by default one is built from ``settings``."""

    def __init__(self, settings: RedisSettings | None = None, *, prefix: str = DEFAULT_PREFIX,
                 client: aioredis.Redis | None = None) -> None:
        self.settings = settings if settings is not None else RedisSettings()
        self.prefix = check_name(prefix, "prefix")
        self._own_client = client is None
        self.client = client if client is not None else build_client(self.settings)
        # Commands through an untyped alias: redis-py types replies as bytes | str (it may
        # decode); this client never does, and the helpers below check what they convert.
        self._cmd: Any = self.client
        self._read_only_scripts = True  # EVALSHA_RO, until the server says it lacks it

    def keys(self, ns: str) -> Keys:
        return keys_for(ns, self.prefix)

    def describe(self) -> str:
        return self.settings.display_url()

    async def ping(self) -> None:
        try:
            await self._cmd.ping()
        except REDIS_ERRORS as exc:
            raise _failed(f"pinging Redis at {self.describe()}", exc) from exc

    async def aclose(self) -> None:
        if self._own_client:
            await self._cmd.aclose()

    # ------------------------------------------------------------------ scripts

    async def _eval(self, script: S.Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA (EVALSHA_RO for read-only scripts); load the script on NOSCRIPT."""
        client = self._cmd
        for _attempt in range(3):
            ro = script.read_only and self._read_only_scripts
            try:
                if ro:
                    return await client.evalsha_ro(script.sha, len(keys), *keys, *args)
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await client.script_load(script.text)
            except redis.exceptions.ResponseError as exc:
                if not (ro and "unknown command" in str(exc).lower()):
                    raise
                self._read_only_scripts = False  # a server before 7.0
        raise BackendError(f"Redis keeps answering NOSCRIPT for the {script.name} script")

    # ------------------------------------------------------------------ reads

    async def head_token(self, ns: str) -> tuple[str, ...]:
        k = self.keys(ns)
        try:
            reply = await self._eval(S.HEAD_TOKEN, [k.meta], [])
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the head of {ns!r}", exc) from exc
        # latin-1 maps every byte to one character and back: the token survives any garbage.
        return tuple(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in reply)

    async def load(self, ns: str, *, max_tail: int) -> RawLoad:
        k = self.keys(ns)
        legacy = legacy_keys_for(ns, self.prefix).snapshot
        try:
            meta, ck, tail, inv, old = await self._eval(
                S.LOAD, [k.meta, k.checkpoint, k.log, k.inv, legacy], [max_tail + 1])
        except REDIS_ERRORS as exc:
            raise _failed(f"loading {ns!r}", exc) from exc
        return RawLoad(_pairs(meta), _pairs(ck), list(tail), _pairs(inv), _pairs(old))

    async def load_leaves(self, ns: str) -> RawLeaves:
        k = self.keys(ns)
        try:
            meta, leaves = await self._eval(S.LOAD_LEAVES, [k.meta, k.leaves], [])
        except REDIS_ERRORS as exc:
            raise _failed(f"loading the leaves of {ns!r}", exc) from exc
        return RawLeaves(_pairs(meta), _pairs(leaves))

    async def head(self, ns: str) -> RawHead:
        k = self.keys(ns)
        try:
            pipe = self._cmd.pipeline(transaction=False)
            pipe.hmget(k.meta, ["epoch", "version", "checksum"])
            pipe.hmget(k.inv, ["epoch", "seq"])
            meta, inv = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the head of {ns!r}", exc) from exc
        return RawHead(*(_opt(v) for v in meta), *(_opt(v) for v in inv))

    async def read_log(self, ns: str, first: int, last: int | None = None, *,
                       count: int | None = None, newest_first: bool = False) -> list[bytes]:
        key = self.keys(ns).log
        high = "+" if last is None else str(last)
        try:
            if newest_first:
                entries = await self._cmd.xrevrange(key, high, str(first), count)
            else:
                entries = await self._cmd.xrange(key, str(first), high, count)
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the change log of {ns!r}", exc) from exc
        return [fields.get(b"e", b"") for _id, fields in entries or []]

    async def read_invalidation_log(self, ns: str, first: int, last: int) -> list[bytes]:
        try:
            entries = await self._cmd.xrange(self.keys(ns).inv_log, str(first), str(last))
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the invalidation log of {ns!r}", exc) from exc
        return [fields.get(b"e", b"") for _id, fields in entries or []]

    async def subscribers(self, ns: str) -> int:
        try:
            result = await self._cmd.pubsub_numsub(self.keys(ns).config_channel)
        except REDIS_ERRORS as exc:
            raise _failed("reading PUBSUB NUMSUB", exc) from exc
        return int(result[0][1]) if result else 0

    # ------------------------------------------------------------------ writes

    async def commit(self, ns: str, commit: Commit) -> CommitResult:
        k = self.keys(ns)
        meta = [x for pair in commit.meta.items() for x in pair]
        sets = [x for pair in commit.sets.items() for x in pair]
        try:
            if commit.mode == "next":
                epoch, version = commit.expect
                reply = await self._eval(S.COMMIT_NEXT, [k.meta, k.leaves, k.log], [
                    HEAD_PROTOCOL, epoch, version, commit.version, commit.event,
                    k.config_channel, commit.log_maxlen, _PUBLISH, len(meta), len(sets),
                    len(commit.deletes), *meta, *sets, *commit.deletes])
            else:
                if len(commit.expect) != 4:
                    raise ValueError("a 'new' commit expects the token head_token() returned")
                ck = [x for pair in (commit.checkpoint or {}).items() for x in pair]
                reply = await self._eval(S.COMMIT_NEW, [k.meta, k.leaves, k.checkpoint, k.log], [
                    *(t.encode("latin-1") for t in commit.expect), commit.version,
                    commit.event, k.config_channel, commit.log_maxlen, _PUBLISH, len(meta),
                    len(sets), len(ck), *meta, *sets, *ck])
        except REDIS_ERRORS as exc:
            raise _failed(f"publishing to {ns!r}", exc) from exc
        new_epoch = commit.meta.get("epoch") or (
            commit.expect[0] if commit.mode == "next" else None)
        return _result(reply, new_epoch)

    async def write_checkpoint(self, ns: str, epoch: str, version: int,
                               fields: Mapping[str, str | bytes]) -> bool:
        k = self.keys(ns)
        args = [x for pair in fields.items() for x in pair]
        try:
            done = await self._eval(S.WRITE_CHECKPOINT, [k.meta, k.checkpoint],
                                    [epoch, version, *args])
        except REDIS_ERRORS as exc:
            raise _failed(f"writing the checkpoint of {ns!r}", exc) from exc
        return bool(done)

    async def send_invalidation(self, ns: str, *, expect: tuple[str, int] | None, epoch: str,
                                seq: int, event: bytes, log_maxlen: int) -> CommitResult:
        k = self.keys(ns)
        create, old_epoch, old_seq = ("1", "", "") if expect is None else (
            "", expect[0], str(expect[1]))
        try:
            reply = await self._eval(S.SEND_INVALIDATION, [k.inv, k.inv_log], [
                create, old_epoch, old_seq, epoch, seq, event, k.inv_channel, log_maxlen,
                _PUBLISH])
        except REDIS_ERRORS as exc:
            raise _failed(f"sending an invalidation to {ns!r}", exc) from exc
        return _result(reply, epoch)

    async def retire_legacy(self, ns: str, notice: bytes, ttl: float) -> int:
        old = legacy_keys_for(ns, self.prefix)
        try:
            receivers = await self._eval(S.RETIRE_LEGACY, [old.snapshot, old.log],
                             [notice, old.channel, _ms(ttl), _PUBLISH])
        except REDIS_ERRORS as exc:
            raise _failed(f"retiring the protocol-1 keys of {ns!r}", exc) from exc
        return int(receivers)

    # ------------------------------------------------------------------ presence, status

    async def write_presence(self, ns: str, instance: str, record: bytes,
                             ttl: float) -> RawHead:
        k = self.keys(ns)
        now = int(time.time() * 1000)
        try:
            pipe = self._cmd.pipeline(transaction=False)
            pipe.set(k.presence_record(instance), record, px=_ms(ttl))
            pipe.zadd(k.presence, {instance: now + _ms(ttl)})
            pipe.zremrangebyscore(k.presence, "-inf", f"({now}")
            pipe.hmget(k.meta, ["epoch", "version", "checksum"])
            pipe.hmget(k.inv, ["epoch", "seq"])
            *_, meta, inv = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _failed(f"writing the presence of {ns!r}", exc) from exc
        return RawHead(*(_opt(v) for v in meta), *(_opt(v) for v in inv))

    async def read_presence(self, ns: str) -> list[bytes]:
        k = self.keys(ns)
        try:
            names = await self._cmd.zrangebyscore(k.presence, int(time.time() * 1000), "+inf")
            if not names:
                return []
            values = await self._cmd.mget([k.presence_record(n.decode()) for n in names])
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the presence of {ns!r}", exc) from exc
        return [v for v in values if v is not None]

    async def remove_presence(self, ns: str, instance: str) -> None:
        k = self.keys(ns)
        try:
            pipe = self._cmd.pipeline(transaction=False)
            pipe.delete(k.presence_record(instance))
            pipe.zrem(k.presence, instance)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _failed(f"removing the presence of {ns!r}", exc) from exc

    def _status_key(self, name: str) -> str:
        return f"{self.prefix}:daemon:{name}"

    @property
    def _status_index(self) -> str:
        return f"{self.prefix}:daemons"

    async def write_status(self, name: str, doc: bytes, ttl: float) -> None:
        now = int(time.time() * 1000)
        try:
            pipe = self._cmd.pipeline(transaction=False)
            pipe.set(self._status_key(name), doc, px=_ms(ttl))
            pipe.zadd(self._status_index, {name: now + _ms(ttl)})
            pipe.zremrangebyscore(self._status_index, "-inf", f"({now}")
            await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _failed("writing the daemon status", exc) from exc

    async def read_statuses(self) -> list[bytes]:
        try:
            names = await self._cmd.zrangebyscore(self._status_index,
                                                    int(time.time() * 1000), "+inf")
            if not names:
                return []
            values = await self._cmd.mget([self._status_key(n.decode()) for n in names])
        except REDIS_ERRORS as exc:
            raise _failed("reading the daemons' status", exc) from exc
        return [v for v in values if v is not None]

    async def delete_status(self, name: str) -> None:
        try:
            pipe = self._cmd.pipeline(transaction=False)
            pipe.delete(self._status_key(name))
            pipe.zrem(self._status_index, name)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _failed("deleting the daemon status", exc) from exc

    # ------------------------------------------------------------------ factories

    def subscription(self, ns: str) -> RedisSubscription:
        k = self.keys(ns)
        return RedisSubscription(self.client, {k.config_channel: "config",
                                               k.inv_channel: "invalidate"})

    def cache_store(self, ns: str, name: str) -> RedisCacheStore:
        return RedisCacheStore(self, self.keys(ns), name)


class RedisSubscription:
    """One pubsub connection subscribed to the config and invalidation channels.

    redis-py re-subscribes by itself when it reconnects (on the next read after a drop, or
    inside a read that lost its connection); the confirmations that follow are what `next`
    turns into ``subscribed``: the confirmation whose count reaches both channels.
    """

    def __init__(self, client: aioredis.Redis, channels: Mapping[str, Any]) -> None:
        self._pubsub: PubSub = client.pubsub()
        self._kinds = {c.encode(): kind for c, kind in channels.items()}  # channel -> kind
        self._channels = tuple(self._kinds)
        self._subscribe = True  # SUBSCRIBE before the next read
        self._confirmed = False
        self._closed = False

    @property
    def connected(self) -> bool:
        conn = self._pubsub.connection
        return self._confirmed and conn is not None and conn.is_connected

    async def next(self, timeout: float) -> Message | None:
        if self._closed:
            raise BackendError("the subscription is closed")
        pubsub = self._pubsub
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                if self._subscribe:
                    await pubsub.subscribe(*self._channels)
                    self._subscribe = False
                raw = await pubsub.get_message(timeout=max(0.0, deadline - loop.time()))
            except REDIS_ERRORS as exc:
                self._confirmed = False
                raise _failed("reading the subscription", exc) from exc
            if raw is not None:
                msg = self._message(raw)
                if msg is not None:
                    return msg
            if loop.time() >= deadline:
                return None

    def _message(self, raw: Mapping[str, Any]) -> Message | None:
        kind = raw["type"]
        if kind in ("message", "smessage"):
            which = self._kinds.get(raw["channel"])
            return None if which is None else Message(which, raw["data"])
        if kind == "pong":
            data = raw["data"]
            return Message("pong", data if isinstance(data, bytes) else b"")
        if kind in ("subscribe", "ssubscribe"):
            if int(raw["data"]) < len(self._channels):
                self._confirmed = False  # the first confirmation on a new connection
            elif not self._confirmed:
                self._confirmed = True
                return Message("subscribed")
            return None
        if kind in ("unsubscribe", "sunsubscribe"):
            self._confirmed = False
            self._subscribe = True
            channel = raw["channel"]
            return Message("unsubscribed", channel if isinstance(channel, bytes) else b"")
        return None

    async def ping(self) -> None:
        if self._closed:
            raise BackendError("the subscription is closed")
        try:
            await self._pubsub.ping(HEARTBEAT)
        except REDIS_ERRORS as exc:
            self._confirmed = False
            raise _failed("pinging the subscription", exc) from exc

    async def drop(self) -> None:
        self._confirmed = False
        conn = self._pubsub.connection
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            except REDIS_ERRORS as exc:
                log.debug("closing the pubsub link failed: %s", describe_error(exc))

    async def aclose(self) -> None:
        self._closed = True
        self._confirmed = False
        try:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        except REDIS_ERRORS as exc:
            log.debug("closing the pubsub link failed: %s", describe_error(exc))


def glob_escape(text: str) -> str:
    """Escape Redis glob specials so ``text`` matches itself in SCAN MATCH."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


class RedisCacheStore:
    """The L2 of one named cache (docs/cache.md): values under ``keys.cache(name)``, and the
    cache's generations, counter and epoch beside them."""

    def __init__(self, transport: RedisTransport, keys: Keys, name: str) -> None:
        self._t = transport
        self.value_prefix = keys.cache(name)
        self.gen_prefix = f"{keys.base}:cachegen:{name}:"
        self.epoch_key = f"{keys.base}:cacheepoch:{name}"
        self.counter_key = f"{keys.base}:cacheseq:{name}"

    async def read(self, key: str) -> tuple[bytes | None, tuple[bytes, bytes]]:
        try:
            value, gen, epoch = await self._t._cmd.mget(
                self.value_prefix + key, self.gen_prefix + key, self.epoch_key)
        except REDIS_ERRORS as exc:
            raise _failed("reading the L2 cache", exc) from exc
        return value, (gen or b"0", epoch or b"0")

    async def fill(self, key: str, payload: bytes, gens: tuple[bytes, bytes],
                   ttl: float) -> bool:
        try:
            done = await self._t._eval(
                S.CACHE_FILL, [self.value_prefix + key, self.gen_prefix + key, self.epoch_key],
                [gens[0], gens[1], payload, _ms(ttl)])
        except REDIS_ERRORS as exc:
            raise _failed("filling the L2 cache", exc) from exc
        return bool(done)

    async def put(self, key: str, payload: bytes, ttl: float) -> None:
        try:
            await self._t._eval(
                S.CACHE_PUT, [self.counter_key, self.value_prefix + key, self.gen_prefix + key],
                [payload, _ms(ttl), GENERATION_TTL_MS])
        except REDIS_ERRORS as exc:
            raise _failed("writing the L2 cache", exc) from exc

    async def invalidate(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        names = [self.counter_key]
        for key in keys:
            names += (self.value_prefix + key, self.gen_prefix + key)
        try:
            await self._t._eval(S.CACHE_INVALIDATE, names, [GENERATION_TTL_MS])
        except REDIS_ERRORS as exc:
            raise _failed("invalidating the L2 cache", exc) from exc

    async def invalidate_prefix(self, prefix: str) -> int:
        client = self._t._cmd
        pattern = glob_escape(self.value_prefix + prefix) + "*"
        deleted = 0
        try:
            await client.incr(self.epoch_key)
            batch: list[bytes] = []
            async for name in client.scan_iter(match=pattern, count=SCAN_COUNT):
                batch.append(name)
                if len(batch) >= SCAN_COUNT:
                    deleted += int(await client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(await client.unlink(*batch))
        except REDIS_ERRORS as exc:
            raise _failed("invalidating an L2 cache prefix", exc) from exc
        return deleted
