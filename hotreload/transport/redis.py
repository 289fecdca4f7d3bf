"""`RedisTransport`: the transport over one Redis server (redis-py asyncio).

Commands share one connection pool; each `Subscription` holds its own connection. Every
connection has TCP keepalives and ``TCP_USER_TIMEOUT``, so a half-open link fails within seconds.
redis-py errors become `BackendError` here, with a one-line message that holds no secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import PubSub

from ..config import RedisSettings
from ..errors import BackendError
from ..wire.names import DEFAULT_PREFIX, Keys, check_name, keys_for, legacy_keys_for
from . import _scripts as S
from ._client import REDIS_ERRORS, build_client, describe_error, keepalive_options
from ._client import failed as _failed
from ._client import ms as _ms
from ._redis_cache import RedisCacheStore
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

__all__ = ["REDIS_ERRORS", "BaseRedisTransport", "RedisCacheStore", "RedisSubscription",
           "RedisTransport", "build_client", "describe_error", "keepalive_options"]

log = logging.getLogger("hotreload.transport")

#: The payload of subscription PINGs (its reply comes back as a ``pong`` message).
HEARTBEAT: Final = b"hotreload-heartbeat"
#: Protocol 1 subscribers listen with SUBSCRIBE, whatever the deployment (§13).
_LEGACY_PUBLISH: Final = "PUBLISH"


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


class BaseRedisTransport:
    """What the Redis transports share (one server, Sentinel, Cluster): every command goes
    through ``cmd``, a redis-py asyncio client, closed by `aclose` if ``own``. A subclass adds
    `subscription` and whatever its deployment needs."""

    #: The command the publish scripts run (SPUBLISH on a cluster).
    publish_command: ClassVar[str] = "PUBLISH"

    def __init__(self, settings: RedisSettings, prefix: str, cmd: Any, *, own: bool) -> None:
        self.settings = settings
        self.prefix = check_name(prefix, "prefix")
        self._own_client = own
        # Commands through an untyped alias: redis-py types replies as bytes | str (it may
        # decode); this client never does, and the helpers below check what they convert.
        self._cmd: Any = cmd
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

    async def _eval(self, script: S.Script, keys: Sequence[str], args: Sequence[Any], *,
                    primary: bool = False) -> Any:
        """EVALSHA (EVALSHA_RO for read-only scripts, unless ``primary``: a replica may
        serve those); load the script on NOSCRIPT."""
        client = self._cmd
        for _attempt in range(3):
            ro = script.read_only and self._read_only_scripts and not primary
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
            reply = await self._eval(S.HEAD_TOKEN, [k.meta], [], primary=True)
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the head of {ns!r}", exc) from exc
        # latin-1 maps every byte to one character and back: the token survives any garbage.
        return tuple(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in reply)

    async def load(self, ns: str, *, max_tail: int, primary: bool = False) -> RawLoad:
        k = self.keys(ns)
        legacy = legacy_keys_for(ns, self.prefix).snapshot
        try:
            meta, ck, tail, inv, old = await self._eval(
                S.LOAD, [k.meta, k.checkpoint, k.log, k.inv, legacy], [max_tail + 1],
                primary=primary)
        except REDIS_ERRORS as exc:
            raise _failed(f"loading {ns!r}", exc) from exc
        return RawLoad(_pairs(meta), _pairs(ck), list(tail), _pairs(inv), _pairs(old))

    async def load_leaves(self, ns: str, *, primary: bool = False) -> RawLeaves:
        k = self.keys(ns)
        try:
            meta, leaves = await self._eval(S.LOAD_LEAVES, [k.meta, k.leaves], [],
                                            primary=primary)
        except REDIS_ERRORS as exc:
            raise _failed(f"loading the leaves of {ns!r}", exc) from exc
        return RawLeaves(_pairs(meta), _pairs(leaves))

    async def head(self, ns: str, *, primary: bool = False) -> RawHead:
        k = self.keys(ns)
        try:
            pipe = self._cmd.pipeline(transaction=False)
            pipe.hmget(k.meta, ["epoch", "version", "checksum"])
            pipe.hmget(k.inv, ["epoch", "seq"])
            meta, inv = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _failed(f"reading the head of {ns!r}", exc) from exc
        return RawHead(*(_opt(v) for v in meta), *(_opt(v) for v in inv))

    async def survey(self, ns: str) -> RawSurvey:
        k = self.keys(ns)
        names = {"meta": k.meta, "leaves": k.leaves, "checkpoint": k.checkpoint, "log": k.log}
        try:
            pipe = self._cmd.pipeline(transaction=True)
            for key in names.values():
                pipe.type(key)
            for what in ("meta", "leaves", "checkpoint"):
                pipe.hgetall(names[what])
            replies = await pipe.execute(raise_on_error=False)
        except REDIS_ERRORS as exc:
            raise _failed(f"surveying {ns!r}", exc) from exc
        types = {what: _text(t) or "none" for what, t in zip(names, replies[:4], strict=True)}
        hashes = [r if isinstance(r, dict) and types[w] == "hash" else {}
                  for w, r in zip(("meta", "leaves", "checkpoint"), replies[4:], strict=True)]
        for reply in replies:
            if isinstance(reply, Exception) and "WRONGTYPE" not in str(reply):
                raise _failed(f"surveying {ns!r}", reply) from reply
        return RawSurvey(types, *hashes)

    async def read_log(self, ns: str, first: int, last: int | None = None, *,
                       count: int | None = None, newest_first: bool = False,
                       primary: bool = False) -> list[bytes]:
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

    async def read_invalidation_log(self, ns: str, first: int, last: int, *,
                                    primary: bool = False) -> list[bytes]:
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
                    k.config_channel, commit.log_maxlen, self.publish_command, len(meta),
                    len(sets),
                    len(commit.deletes), *meta, *sets, *commit.deletes])
            else:
                if len(commit.expect) != 4:
                    raise ValueError("a 'new' commit expects the token head_token() returned")
                ck = [x for pair in (commit.checkpoint or {}).items() for x in pair]
                reply = await self._eval(S.COMMIT_NEW, [k.meta, k.leaves, k.checkpoint, k.log], [
                    *(t.encode("latin-1") for t in commit.expect), commit.version,
                    commit.event, k.config_channel, commit.log_maxlen, self.publish_command,
                    len(meta),
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
                self.publish_command])
        except REDIS_ERRORS as exc:
            raise _failed(f"sending an invalidation to {ns!r}", exc) from exc
        return _result(reply, epoch)

    async def purge(self, ns: str) -> int:
        pattern = _glob_escape(self.keys(ns).base) + ":*"
        deleted = 0
        try:
            batch: list[bytes] = []
            async for name in self._cmd.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    deleted += int(await self._cmd.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(await self._cmd.unlink(*batch))
        except REDIS_ERRORS as exc:
            raise _failed(f"deleting the keys of {ns!r}", exc) from exc
        return deleted

    async def retire_legacy(self, ns: str, notice: bytes, ttl: float) -> int:
        old = legacy_keys_for(ns, self.prefix)
        try:
            receivers = await self._eval(S.RETIRE_LEGACY, [old.snapshot, old.log],
                             [notice, old.channel, _ms(ttl), _LEGACY_PUBLISH])
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
        return status_key(self.prefix, name)

    @property
    def _status_index(self) -> str:
        return status_index(self.prefix)

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

    def cache_store(self, ns: str, name: str) -> RedisCacheStore:
        return RedisCacheStore(self, self.keys(ns), name)


class RedisTransport(BaseRedisTransport):
    """The transport over one Redis server. ``client``: share an existing client (not closed
    by `aclose`); by default one is built from ``settings``."""

    def __init__(self, settings: RedisSettings | None = None, *, prefix: str = DEFAULT_PREFIX,
                 client: aioredis.Redis | None = None) -> None:
        settings = settings if settings is not None else RedisSettings()
        self.client = client if client is not None else build_client(settings)
        super().__init__(settings, prefix, self.client, own=client is None)

    def subscription(self, ns: str) -> RedisSubscription:
        k = self.keys(ns)
        return RedisSubscription(self.client, {k.config_channel: "config",
                                               k.inv_channel: "invalidate"})


class RedisSubscription:
    """One pubsub connection subscribed to the config and invalidation channels.

    redis-py re-subscribes by itself when it reconnects (on the next read after a drop, or
    inside a read that lost its connection); the confirmations that follow are what `next`
    turns into ``subscribed``: after each connect (a callback on the connection tells), the
    first confirmation whose count reaches all the channels.
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
                    if pubsub.connection is not None:  # registered once (a set of callbacks)
                        pubsub.connection.register_connect_callback(self._connected)
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

    def _connected(self, _connection: Any) -> None:
        """A (re)connect: the confirmations to come count again from zero."""
        self._confirmed = False

    def _message(self, raw: Mapping[str, Any]) -> Message | None:
        kind = raw["type"]
        if kind in ("message", "smessage"):
            which = self._kinds.get(raw["channel"])
            return None if which is None else Message(which, raw["data"])
        if kind == "pong":
            data = raw["data"]
            return Message("pong", data if isinstance(data, bytes) else b"")
        if kind in ("subscribe", "ssubscribe"):
            if int(raw["data"]) >= len(self._channels) and not self._confirmed:
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
        if self._pubsub.connection is not None:  # it goes back to the pool: leave it clean
            self._pubsub.connection.deregister_connect_callback(self._connected)
        try:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        except REDIS_ERRORS as exc:
            log.debug("closing the pubsub link failed: %s", describe_error(exc))


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob specials escaped, so SCAN MATCH finds it literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
