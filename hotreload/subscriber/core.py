"""Subscribing: `AsyncSubscriber` (the core) and `Subscriber` (its sync facade).

The guarantee is "never stale for long, never half-applied":

* subscribe first, then load the snapshot, then apply only events newer than it;
* an event that skips versions triggers a replay from the log, or a snapshot reload when the log
  was trimmed;
* every (re)subscribe confirmation from redis-py (it re-subscribes by itself after a drop)
  triggers the same resync;
* a PING on the pubsub link after silence, with a reply deadline, catches half-open links;
* every few seconds the server's version is compared with ours, as a backstop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import pydantic
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from .. import protocol as p
from .._gc import collect_startup_garbage
from ..config import HotReloadConfig, as_config
from ..connection import REDIS_ERRORS, describe_error, make_client
from ..errors import HotReloadError, ProtocolError, SettingsRejected, StartTimeout
from .events import CacheHook, Dispatcher, Invalidation, Resync, SettingsChange
from .frozen import FrozenSettings, index_tree, patch_tree, to_plain, wrap
from .state import Current, Link, Stats, Tree

log = logging.getLogger("hotreload.subscriber")

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
POLL_SECONDS = 0.25
#: How long an event may be in flight before "the server is ahead" means "we lost one".
VERSION_RECHECK_SECONDS = 0.5
HEARTBEAT_MESSAGE = "hotreload-heartbeat"


class AsyncSubscriber(Generic[ModelT]):
    """Keeps one namespace's settings current in this process."""

    get: Callable[..., Any]
    """``get("a.b", default=None)``: one setting (or a sub-object) of the current version."""

    def __init__(
        self,
        config: HotReloadConfig | str | None = None,
        *,
        namespace: str | None = None,
        model: type[ModelT] | None = None,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.config = as_config(config)
        self.namespace = p.check_name(self.config.namespace if namespace is None else namespace,
                                      "namespace")
        self.model = model
        self.keys = p.keys_for(self.namespace, self.config.prefix)
        self._hmac = self.config.security.key_bytes()
        self._max_bytes = self.config.security.max_message_bytes
        self._tuning = self.config.subscriber
        self._own_client = client is None
        self.redis = client if client is not None else make_client(self.config)
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._progress = asyncio.Event()
        self._waiting = 0
        self._closing = False
        self._raw_version = -1
        self._raw_flat: dict[str, Any] = {}
        self._epoch: str | None = None  # which history of the namespace we follow
        self._raw_checksum: str | None = None
        self._current = Current(0, {}, {}, self._empty_settings(), {})
        self.get = self._current.index.get
        self._events = Dispatcher(self.namespace)
        self._swap_hooks: list[Callable[[Current], None]] = []
        self.last_error: str | None = None
        self.stats = Stats()
        self._link = Link()

    # ------------------------------------------------------------------ public state

    @property
    def settings(self) -> Any:
        """The current settings: a `model` instance, or a read-only mapping."""
        return self._current.settings

    @property
    def version(self) -> int:
        """The version the current settings belong to."""
        return self._current.version

    @property
    def received_version(self) -> int:
        """The newest version received (ahead of `version` while settings are rejected)."""
        return self._raw_version

    @property
    def connected(self) -> bool:
        return self._link.connected

    def as_dict(self) -> dict[str, Any]:
        """The current settings as plain nested dicts and lists."""
        if isinstance(self._current.settings, pydantic.BaseModel):
            return self._current.settings.model_dump(mode="json")
        result: dict[str, Any] = to_plain(self._current.settings)
        return result

    def status(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "version": self.version,
            "received_version": self._raw_version,
            "connected": self._link.connected,
            "last_error": self.last_error,
            **dataclasses.asdict(self.stats),
            "listener_errors": self._events.errors,
        }

    # ------------------------------------------------------------------ registration

    def on_change(self, func: F | None = None, /, *, keys: Sequence[str] = (),
                  prefixes: Sequence[str] = ()) -> Any:
        """Register ``func(change: SettingsChange)`` (as a decorator, with or without
        arguments); with keys/prefixes, only changes of those keys."""
        return self._events.on_change(func, keys=keys, prefixes=prefixes)

    def on_invalidate(self, func: F | None = None, /, *, keys: Sequence[str] = (),
                      prefixes: Sequence[str] = ()) -> Any:
        """Register ``func(event: Invalidation)`` for invalidation events."""
        return self._events.on_invalidate(func, keys=keys, prefixes=prefixes)

    def on_resync(self, func: F) -> F:
        """Register ``func(event: Resync)``, called after every resync that moved versions."""
        return self._events.on_resync(func)

    def register_cache(self, cache: CacheHook) -> None:
        """Deliver invalidations and link health to a local cache."""
        self._events.add_cache(cache)
        cache.set_trusted(self._link.connected and self._ready.is_set())

    def unregister_cache(self, cache: CacheHook) -> None:
        self._events.remove_cache(cache)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AsyncSubscriber[ModelT]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self, timeout: float | None = 10.0) -> None:
        """Subscribe and return once the first snapshot is loaded."""
        if self._closed:
            raise HotReloadError("this subscriber was closed; create a new one")
        if self._task is None:
            self._closing = False
            self._pubsub = self.redis.pubsub()
            self._task = asyncio.create_task(self._run(), name=f"hotreload-sub-{self.namespace}")
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            reason = self.last_error or self._link.last_failure or "no snapshot yet"
            await self.aclose()
            raise StartTimeout(
                f"subscriber of {self.namespace!r} not ready after {timeout}s: {reason}"
            ) from None
        collect_startup_garbage()

    async def wait_for_version(self, version: int, timeout: float = 10.0, *,
                               applied: bool = True) -> None:
        """Wait until `version` (or, with ``applied=False``, `received_version`) reaches
        ``version``; raises `TimeoutError` after ``timeout`` seconds."""
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout):
                while (self.version if applied else self._raw_version) < version:
                    await self._progress.wait()
        except TimeoutError:
            raise TimeoutError(f"version {self.version} < {version} after {timeout}s") from None
        finally:
            self._waiting -= 1

    def _advanced(self) -> None:
        """Wake `wait_for_version` callers (if any: this runs on every event)."""
        if self._waiting:
            event, self._progress = self._progress, asyncio.Event()
            event.set()

    async def aclose(self) -> None:
        self._closing = self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            except REDIS_ERRORS:
                pass
            self._pubsub = None
        if self._own_client:
            await self.redis.aclose()
        self._ready.clear()
        self._set_connected(False, "closed")

    # ------------------------------------------------------------------ the reader loop

    async def _run(self) -> None:
        pubsub = self._pubsub
        if pubsub is None:  # pragma: no cover - start() sets it
            raise RuntimeError("subscriber not started")
        loop = asyncio.get_running_loop()
        backoff = 0.05
        while not self._closing:
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(self.keys.channel)
                msg = await pubsub.get_message(timeout=POLL_SECONDS)
                now = loop.time()
                if msg is not None:
                    self._link.last_rx = now
                    self._link.ping_sent = None
                    await self._on_pubsub(msg)
                await self._tick(pubsub, loop.time())
                backoff = 0.05
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closing or task is None or task.cancelling():
                    raise
                # A stray CancelledError (e.g. from a library call): not a request to stop.
                log.error("subscriber of %s: an operation was cancelled; resyncing",
                          self.namespace, extra={"action": "error", "namespace": self.namespace})
                self._link_failed("cancelled operation")
                await _drop(pubsub)
                await asyncio.sleep(backoff)
            except Exception as exc:
                if isinstance(exc, REDIS_ERRORS):
                    self._link_failed(describe_error(exc))
                else:
                    log.exception("subscriber of %s: unexpected error; resyncing",
                                  self.namespace,
                                  extra={"action": "error", "namespace": self.namespace})
                    self._link_failed("internal error")
                # Any failure means "we may have missed something": drop the pubsub link so that
                # redis-py re-subscribes, and its confirmation triggers a full resync.
                await _drop(pubsub)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._tuning.reconnect_backoff_max)

    async def _on_pubsub(self, msg: Mapping[str, Any]) -> None:
        kind = msg["type"]
        if kind == "message":
            await self._on_message(msg["data"])
        elif kind == "subscribe":
            if self._link.ever_connected:
                self.stats.reconnects += 1
                log.info("subscriber of %s re-subscribed; resyncing", self.namespace,
                         extra={"action": "reconnected", "namespace": self.namespace})
            self._link.ever_connected = True
            self._set_connected(True, "subscribed")
            await self._resync("subscribed")

    async def _tick(self, pubsub: PubSub, now: float) -> None:
        link = self._link
        if not link.connected:
            return
        if link.ping_sent is not None:
            if now - link.ping_sent > self._tuning.heartbeat_timeout:
                self.stats.heartbeat_timeouts += 1
                link.ping_sent = None
                log.warning("subscriber of %s: no heartbeat reply in %.1fs; reconnecting",
                            self.namespace, self._tuning.heartbeat_timeout,
                            extra={"action": "heartbeat_timeout", "namespace": self.namespace})
                self._link_failed("heartbeat timeout")
                await _drop(pubsub)
                return
        elif now - link.last_rx > self._tuning.heartbeat_interval:
            link.ping_sent = now
            await pubsub.ping(HEARTBEAT_MESSAGE)
        if link.behind_target is not None and now >= link.behind_check:
            # The server was ahead at the last check. Events in flight explain that; still
            # being behind a moment later means one was lost.
            target, link.behind_target = link.behind_target, None
            if self._raw_version < target:
                await self._resync("version check")
        if now >= link.next_version_check:
            link.next_version_check = now + self._tuning.version_check_interval
            try:
                server, epoch, cs = await self._server_state()
            except REDIS_ERRORS as exc:
                log.debug("version check failed: %s", describe_error(exc))
                return
            raw = self._raw_version
            if server == raw == 0:
                return  # the namespace is (still) absent on the server
            if self._epoch is None and raw == 0 and server > 0:
                # The namespace did not exist when we loaded it and has been created since: its
                # first events may still be in flight. Like a server ahead: check again shortly.
                link.behind_target = server
                link.behind_check = now + VERSION_RECHECK_SECONDS
            elif (epoch != self._epoch or server < raw
                  or (server == raw and cs != self._raw_checksum)):
                # another history, a server behind us, or the same version with other content
                await self._resync("version check", force=True)
            elif server > raw:
                link.behind_target = server
                link.behind_check = now + VERSION_RECHECK_SECONDS

    def _link_failed(self, reason: str) -> None:
        self._link.last_failure = reason
        self._link.errors += 1
        self._set_connected(False, reason)

    def _set_connected(self, up: bool, reason: str) -> None:
        link = self._link
        if up:
            link.down_logged = False
            link.connected = True
            return  # caches are trusted again only after the resync
        if link.connected or not link.down_logged:
            if not self._closing:
                log.warning("subscriber of %s: link down (%s); will resync on reconnect",
                            self.namespace, reason,
                            extra={"action": "disconnected", "namespace": self.namespace})
            link.down_logged = True
        link.connected = False
        self._events.set_trusted(False)

    # ------------------------------------------------------------------ events

    async def _on_message(self, data: bytes) -> None:
        try:
            env = p.decode_envelope(data, hmac_key=self._hmac, max_bytes=self._max_bytes)
            if env.namespace != self.namespace:
                raise ProtocolError(f"event for namespace {env.namespace!r}")
        except ProtocolError as exc:
            self.stats.rejected_messages += 1
            log.warning("subscriber of %s: ignored a message: %s", self.namespace, exc,
                        extra={"action": "rejected_message", "namespace": self.namespace})
            return
        if env.epoch != self._epoch:
            if self._epoch is None and self._raw_version == 0 and env.version == 1:
                self._epoch = env.epoch  # the first event of a namespace that did not exist
            else:
                # The namespace was lost and rebuilt on the server (flush, restart, eviction):
                # its versions start over, so they cannot be compared with ours.
                await self._resync(f"new history on the server (epoch {env.epoch})",
                                   force=True)
                return
        if env.version <= self._raw_version:
            if (env.version == self._raw_version and env.kind == "config"
                    and env.checksum != self._raw_checksum):
                # Same version, other content: what we applied was not the server's event.
                await self._resync("content differs from the server's", force=True)
            return  # already applied (duplicate, or covered by a snapshot)
        if env.version == self._raw_version + 1:
            await self._apply(env)
        else:
            await self._resync(f"gap: have v{self._raw_version}, got v{env.version}")

    async def _apply(self, env: p.Envelope, *, replay: bool = False) -> None:
        self._raw_version = env.version
        if env.kind == "invalidate":
            self.stats.invalidations += 1
            if self.last_error is None:
                self._current = dataclasses.replace(self._current, version=env.version)
            inv = Invalidation(self.namespace, env.version, env.keys, env.prefixes, env.all,
                               env.origin, env.source)
            await self._events.invalidation(inv)
        else:
            self.stats.events += 1
            self._raw_checksum = env.checksum
            tree: Tree | None = None
            if self.last_error is None:  # the usual case: patch only what changed
                cur = self._current
                patched = patch_tree(cur.nested, cur.index, env.changes)
                if patched is not None:
                    tree = (patched[0], p.apply_changes(cur.flat, env.changes), patched[1])
            self._raw_flat = tree[1] if tree else p.apply_changes(self._raw_flat, env.changes)
            await self._settle(env.version, env.changes, env.source, env.origin, env.ts, False,
                               tree=tree)
        self._advanced()

    async def _settle(self, version: int, changes: tuple[p.Change, ...] | None, source: str,
                      origin: str, ts: float, resync: bool, notify: bool = True,
                      tree: Tree | None = None) -> None:
        """Validate the raw state; swap it in if valid, keep the last good one if not."""
        old = self._current
        recovering = self.last_error is not None
        try:
            new = self._build(version, self._raw_flat, tree)
        except SettingsRejected as exc:
            self.stats.rejected_settings += 1
            self.last_error = str(exc)
            log.error("subscriber of %s: rejected v%d, keeping v%d: %s", self.namespace,
                      version, old.version, exc,
                      extra={"action": "rejected", "namespace": self.namespace,
                             "version": version})
            return
        self.last_error = None
        self._swap(new)
        if self._raw_version >= 0:
            self._ready.set()
        if not notify or not self._events.wants_changes:
            return  # the initial load is not a change; and nobody would hear of it
        if changes is None or recovering:
            changes = p.diff(old.flat, new.flat)
        changes = _read_only(changes)  # listeners must not reach into the live settings
        if changes:
            await self._events.change(SettingsChange(self.namespace, version, changes,
                                                     old.settings, new.settings, source,
                                                     origin, ts, resync))

    def _empty_settings(self) -> Any:
        return self._build(0, {}).settings if self.model is None else None

    def _build(self, version: int, flat: dict[str, Any], tree: Tree | None = None) -> Current:
        if tree is None:
            nested = p.unflatten(flat)
            index = index_tree(nested)[1]
        else:
            nested, flat, index = tree
        if self.model is None:
            settings: Any = FrozenSettings(nested)
        else:
            try:
                settings = self.model.model_validate(nested)
            except pydantic.ValidationError as exc:
                raise SettingsRejected(_describe_validation(exc)) from None
            except Exception as exc:  # a broken model must not break the subscriber
                raise SettingsRejected(
                    f"{self.model.__name__} raised {type(exc).__name__}: {exc}") from None
        return Current(version, flat, nested, settings, index)

    def _swap(self, new: Current) -> None:
        self._current = new
        self.get = new.index.get
        for hook in self._swap_hooks:
            hook(new)

    # ------------------------------------------------------------------ resync

    async def _server_state(self) -> tuple[int, str | None, str | None]:
        """The server's version, epoch and checksum (version -1 if unreadable)."""
        version, epoch, cs = await self.redis.hmget(self.keys.snapshot,
                                                    ["version", "epoch", "checksum"])
        try:
            number = int(version or 0)
        except ValueError:
            number = -1  # corrupt: the reload will say why
        return number, _text(epoch), _text(cs)

    async def _resync(self, reason: str, *, force: bool = False) -> None:
        """Catch up with the server: replay from the log, else reload the snapshot."""
        self.stats.resyncs += 1
        self._events.set_trusted(False)
        start = self._raw_version
        server, epoch, _cs = await self._server_state()
        # A namespace that did not exist (version 0) continues in whatever history began since.
        same_history = start >= 0 and (epoch == self._epoch or (self._epoch is None
                                                                and start == 0))
        replayed = False
        if not force and same_history and server > start and epoch is not None:
            replayed = await self._replay(start, server, epoch)
        if force or not same_history or (server != self._raw_version and not replayed):
            await self._reload(reason)
        elif self._epoch is None and start == 0 and server == 0 and reason == "subscribed":
            # Reconnected to a namespace that still does not exist: whatever happened while we
            # were away (a short-lived history, then another flush) left no trace to replay.
            await self._events.invalidation(Invalidation(
                self.namespace, 0, all=True, source="resync", reason="resync"))
        if self._raw_version >= 0 and self._current.settings is not None:
            self._ready.set()  # else: no valid settings at all yet; stay not ready
        if self._link.connected:
            self._events.set_trusted(True)
        # A resync read the server's state just now: the backstop check is due an interval later.
        self._link.next_version_check = (asyncio.get_running_loop().time()
                                         + self._tuning.version_check_interval)
        if start < 0:
            log.info("subscriber of %s loaded v%d", self.namespace, self._raw_version,
                     extra={"action": "loaded", "namespace": self.namespace,
                            "version": self._raw_version})
        elif start != self._raw_version:
            log.info("subscriber of %s resynced v%d -> v%d (%s, %s)", self.namespace, start,
                     self._raw_version, reason, "replayed" if replayed else "snapshot",
                     extra={"action": "resynced", "namespace": self.namespace,
                            "version": self._raw_version})
            event = Resync(self.namespace, reason, start, self._raw_version, replayed)
            await self._events.resync(event)

    async def _replay(self, have: int, upto: int, epoch: str) -> bool:
        entries = await self.redis.xrange(self.keys.log, min=f"{have + 1}", max=f"{upto}")
        try:
            envs = p.decode_log(self.namespace, entries or [], hmac_key=self._hmac,
                                max_bytes=self._max_bytes)
        except ProtocolError as exc:
            log.warning("subscriber of %s: bad log entry: %s", self.namespace, exc)
            return False
        if [e.version for e in envs] != list(range(have + 1, upto + 1)) or any(
                e.epoch != epoch for e in envs):
            return False  # trimmed (or another history): fall back to the snapshot
        self.stats.replays += 1
        self._epoch = epoch
        for env in envs:
            await self._apply(env, replay=True)
        return True

    async def _reload(self, reason: str) -> None:
        fields = await self.redis.hgetall(self.keys.snapshot)
        try:
            snap = p.decode_snapshot(self.namespace, fields, hmac_key=self._hmac)
            flat, index = index_tree(snap.settings)
        except ProtocolError as exc:
            self.stats.rejected_messages += 1
            self.last_error = str(exc)
            log.error("subscriber of %s: snapshot rejected, keeping v%d: %s", self.namespace,
                      self.version, exc, extra={"action": "rejected", "namespace": self.namespace})
            return
        self.stats.reloads += 1
        first = self._raw_version < 0
        if snap.version == 0 and not first:
            # Redis lost the namespace (restart without persistence, flush): keep serving the
            # last known settings until a publisher writes the namespace again.
            self._raw_version, self._raw_flat = 0, {}
            self._epoch = self._raw_checksum = None
            self.last_error = ("the namespace has no snapshot on the server (Redis restarted "
                               "or flushed?); keeping the last known settings")
            log.warning("subscriber of %s: %s", self.namespace, self.last_error,
                        extra={"action": "reset", "namespace": self.namespace})
            await self._events.invalidation(Invalidation(
                self.namespace, 0, all=True, source="resync", reason="resync"))
            self._advanced()
            return
        self._raw_version = snap.version
        self._raw_flat = flat
        self._epoch = snap.epoch or None
        self._raw_checksum = snap.checksum
        if not first:
            # Events were missed and could not be replayed: caches must forget everything.
            await self._events.invalidation(Invalidation(
                self.namespace, snap.version, all=True, source="resync", reason="resync"))
        await self._settle(snap.version, None, "snapshot", "", snap.updated_at, not first,
                           notify=not first or self._ready.is_set(),
                           tree=(snap.settings, flat, index))
        if self.last_error is None and self._current.version != snap.version:
            self._current = dataclasses.replace(self._current, version=snap.version)
        self._advanced()


def _read_only(changes: tuple[p.Change, ...]) -> tuple[p.Change, ...]:
    """The changes with lists and objects as tuples and `FrozenSettings` (they are shared with
    the live settings tree)."""
    if all(type(c.new) not in (list, dict) and type(c.old) not in (list, dict) for c in changes):
        return changes
    return tuple(p.Change(c.op, c.key, wrap(c.old), wrap(c.new)) for c in changes)


def _text(value: bytes | str | None) -> str | None:
    if not value:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def _drop(pubsub: PubSub) -> None:
    """Close the pubsub socket; the next read reconnects and re-subscribes."""
    if pubsub.connection is not None:
        try:
            await pubsub.connection.disconnect()
        except Exception as exc:
            log.debug("closing the pubsub link failed: %s", describe_error(exc))


def _describe_validation(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
