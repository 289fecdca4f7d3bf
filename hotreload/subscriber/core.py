"""`AsyncSubscriber`: keeps one namespace's settings current in this process (protocol §8, §9).

Three tasks, so that no server call can delay noticing a dead link (docs/guarantees.md):

* the **reader** reads the subscription, applies the events that follow directly from what it
  holds (no server call: the common case), sends the heartbeat PING and enforces its deadline;
* the **syncer** does everything that reads the server (loads, replays), each call under its own
  deadline; while it works the reader buffers the events that arrive and the caches are told not
  to trust their local copies;
* the **backstop** compares the server's head with ours every `version_check_interval` seconds
  (and writes this instance's presence record in the same round trip).

The gap/epoch/replay/reload decisions are the pure functions of `hotreload.wire.follow`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, Literal, TypeVar

import pydantic

from .._backoff import Backoff
from .._gc import collect_startup_garbage
from ..config import HotReloadConfig, as_config
from ..errors import (
    BackendError,
    HotReloadError,
    ProtocolError,
    SettingsRejected,
    StartTimeout,
    describe_validation,
)
from ..transport import Message, RawHead, Subscription, Transport, open_transport
from ..wire import (
    EMPTY_CHECKSUM,
    MISSING,
    Canary,
    Change,
    Decision,
    Digester,
    Envelope,
    LeafChange,
    Position,
    Verdict,
    check_name,
    decode_event,
    decode_head_triplet,
    decode_invalidation_head,
    diff_values,
    keys_for,
    on_event,
    on_head,
    on_invalidation,
    on_load,
    same_value,
    target_matches,
    unflatten,
    value_change,
)
from ..wire.follow import UNLOADED
from ..wire.presence import PresenceRecord
from . import loading
from .cachefile import LastKnownGood, read_cache_file, write_cache_file
from .events import CacheHook, Dispatcher, Invalidation, Resync, SettingsChange
from .frozen import FrozenSettings, index_tree, patch_tree, to_plain, wrap
from .presence import instance_id, own_record
from .state import Current, Link, Stats, Tree

log = logging.getLogger("hotreload.subscriber")

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

#: How long one read of the subscription waits: the reader's heartbeat check runs at least this
#: often, so a dead link is noticed within heartbeat_interval + heartbeat_timeout + this.
POLL_SECONDS: Final = 0.25
#: How long an event may be in flight before "the server is ahead" means "we lost one".
RECHECK_SECONDS: Final = 0.5
#: Events kept while a resync runs; past it they are dropped and the resync ends with a load.
MAX_BUFFERED: Final = 10_000
#: How long after a change the cache file is rewritten (a burst of changes is one write).
CACHE_FILE_DELAY: Final = 0.2

_Job = Literal["load", "catch-up"]


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
        transport: Transport | None = None,
        service: str | None = None,
        instance: str | None = None,
        cache_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = as_config(config)
        self.namespace = check_name(
            self.config.namespace if namespace is None else namespace, "namespace")
        self.model = model
        self.keys = keys_for(self.namespace, self.config.prefix)
        self._key = self.config.security.key_bytes()
        self._digester = Digester(self._key)
        self._max_bytes = self.config.security.max_message_bytes
        self._tuning = self.config.subscriber
        self._own_transport = transport is None
        self.transport: Transport = transport if transport is not None else open_transport(
            self.config)
        self.service = service or self._tuning.service
        self.instance = instance or instance_id()
        self.cache_file = cache_file if cache_file is not None else self._tuning.cache_file
        self._cache_write: asyncio.Task[None] | None = None
        self._cache_file_tried = False
        self.started_at = time.time()
        # what the server told us (possibly ahead of the validated settings while rejected)
        self._pos = UNLOADED
        self._raw_flat: dict[str, Any] = {}
        self._canary: Canary | None = None
        self._ipos: tuple[str | None, int] = (None, -1)
        # the validated settings every reader sees (swapped atomically)
        self._current = Current(0, {}, {}, self._empty_settings(), {})
        self._applied_epoch: str | None = None  # the epoch of the current settings
        self._applied_at = 0.0  # when they were applied (Unix time)
        self.get = self._current.index.get
        self._swap_hooks: list[Callable[[Current], None]] = []
        self._events = Dispatcher(self.namespace)
        self.last_error: str | None = None
        self.server_note: str | None = None  # e.g. "the server is behind this subscriber"
        self.stats = Stats()
        self._link = Link()
        # tasks and their coordination
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._closed = False
        self._closing = False
        self._progress = asyncio.Event()
        self._waiting = 0
        self._job: _Job | None = None
        self._job_reason = ""
        self._inv_job = False
        self._wake_syncer = asyncio.Event()
        self._wake_backstop = asyncio.Event()
        self._resyncing = False
        self._buffer: collections.deque[Message] = collections.deque()
        self._overflowed = False

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
    def epoch(self) -> str | None:
        """The history (epoch) the current version belongs to (protocol §4.5): it changes
        together with `version` and `settings`, never before them."""
        return self._applied_epoch

    @property
    def received_version(self) -> int:
        """The newest version received (ahead of `version` while settings are rejected)."""
        return self._pos.version

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def link_state(self) -> Literal["up", "down", "stale"]:
        """``up``: following; ``down``: not connected; ``stale``: connected but resyncing or
        holding settings the server no longer confirms."""
        if not self._link.connected:
            return "down"
        return "stale" if (self._resyncing or self.server_note) else "up"

    def as_dict(self) -> dict[str, Any]:
        """The current settings as plain nested dicts and lists."""
        if isinstance(self._current.settings, pydantic.BaseModel):
            return self._current.settings.model_dump(mode="json")
        result: dict[str, Any] = to_plain(self._current.settings)
        return result

    def status(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "instance": self.instance,
            "service": self.service,
            "version": self.version,
            "epoch": self._pos.epoch,
            "received_version": self._pos.version,
            "link": self.link_state,
            "connected": self._link.connected,
            "last_error": self.last_error,
            "server": self.server_note,
            "canary": self._canary_id(),
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
        cache.set_trusted(self._trusted())

    def unregister_cache(self, cache: CacheHook) -> None:
        self._events.remove_cache(cache)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AsyncSubscriber[ModelT]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self, timeout: float | None = 10.0) -> None:
        """Subscribe and return once valid settings are loaded (`StartTimeout` otherwise).

        With a ``cache_file``, a Redis that fails or does not answer within
        ``subscriber.command_timeout`` makes the subscriber start from the file instead
        (`link_state` is ``stale`` until it has resynced with Redis)."""
        if self._closed:
            raise HotReloadError("this subscriber was closed; create a new one")
        if not self._tasks:
            self._closing = False
            self._subscription = self.transport.subscription(self.namespace)
            for coro, name in ((self._read_loop(), "reader"), (self._sync_loop(), "syncer"),
                               (self._backstop_loop(), "backstop")):
                self._tasks.append(asyncio.create_task(
                    coro, name=f"hotreload-{name}-{self.namespace}"))
        try:
            async with asyncio.timeout(timeout):
                if self.cache_file is not None:
                    # Redis that does not answer at all (no error either) is unreachable too.
                    try:
                        async with asyncio.timeout(self._tuning.command_timeout):
                            await self._ready.wait()
                    except TimeoutError:
                        await self._start_from_cache_file(
                            self._link.last_failure or "no answer")
                await self._ready.wait()
        except TimeoutError:
            reason = self.last_error or self._link.last_failure or "no settings yet"
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
                while (self.version if applied else self._pos.version) < version:
                    await self._progress.wait()
        except TimeoutError:
            raise TimeoutError(f"version {self.version} < {version} after {timeout}s") from None
        finally:
            self._waiting -= 1

    async def aclose(self) -> None:
        """Stop following and release the connections (idempotent). Bounded: a server that
        does not answer delays it by at most ``subscriber.command_timeout`` per step."""
        self._closing = self._closed = True
        if self._cache_write is not None:  # the last settings reach the file
            await asyncio.gather(self._cache_write, return_exceptions=True)
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        waiting = [task for task in tasks if task is not current]
        for task in waiting:
            task.cancel()
        if waiting:
            # A driver may swallow a cancellation (redis-py's asyncio client can): the loops
            # also end on `_closing`. A cancellation of aclose itself propagates from here.
            await asyncio.wait(waiting)
            for task in waiting:
                if not task.cancelled() and task.exception() is not None:
                    log.debug("a task of the subscriber of %s ended with %r", self.namespace,
                              task.exception())
        deadline = self._tuning.command_timeout
        if self._subscription is not None:
            try:
                async with asyncio.timeout(deadline):
                    await self._subscription.aclose()
            except (BackendError, TimeoutError):
                pass
            self._subscription = None
        if self._pos.version >= 0:
            try:
                async with asyncio.timeout(deadline):
                    await self.transport.remove_presence(self.namespace, self.instance)
            except (BackendError, TimeoutError):
                pass  # the record expires by itself
        if self._own_transport:
            try:
                async with asyncio.timeout(deadline):
                    await self.transport.aclose()
            except (BackendError, TimeoutError):
                pass
        self._ready.clear()
        self._set_connected(False, "closed")

    def _advanced(self) -> None:
        """Wake `wait_for_version` callers (if any: this runs on every event)."""
        if self._waiting:
            event, self._progress = self._progress, asyncio.Event()
            event.set()

    # ------------------------------------------------------------------ the cache file

    async def _write_cache(self) -> None:
        """Write the applied settings to the cache file, shortly after a change (a burst of
        changes is one write); off the event path, in a worker thread."""
        try:
            await asyncio.sleep(CACHE_FILE_DELAY)
            cur = self._current
            consistent = self.last_error is None and not self._canary_applies()
            lkg = LastKnownGood(self.namespace, self._applied_epoch, cur.version,
                                self._pos.checksum if consistent else "",
                                to_plain(cur.nested), time.time())
            if self.cache_file is not None:
                await asyncio.to_thread(write_cache_file, self.cache_file, lkg)
        except OSError as exc:
            log.warning("subscriber of %s: cannot write the cache file %s: %s",
                        self.namespace, self.cache_file, exc.strerror,
                        extra={"action": "cache_file_failed", "namespace": self.namespace})
        finally:
            self._cache_write = None
        if self._current is not cur and not self._closing:  # changed meanwhile: once more
            self._cache_write = asyncio.get_running_loop().create_task(self._write_cache())

    async def _start_from_cache_file(self, reason: str) -> None:
        """Redis is unreachable before the first load: start from the cache file, once."""
        if self.cache_file is None or self._cache_file_tried:
            return
        self._cache_file_tried = True
        try:
            lkg = await asyncio.to_thread(read_cache_file, self.cache_file, self.namespace)
        except ProtocolError as exc:
            log.warning("subscriber of %s: ignoring the cache file: %s", self.namespace, exc,
                        extra={"action": "cache_file_ignored", "namespace": self.namespace})
            return
        self._pos = Position(lkg.epoch, lkg.version, lkg.checksum or EMPTY_CHECKSUM)
        flat, index = index_tree(lkg.settings)
        self._raw_flat = flat
        await self._settle(lkg.version, None, "cache file", "", lkg.written_at, False,
                           notify=False, tree=(lkg.settings, flat, index))
        if self._ready.is_set():
            self.server_note = (f"started from the cache file (v{lkg.version}, written "
                                f"{time.time() - lkg.written_at:.0f}s ago): Redis is "
                                f"unreachable ({reason}); will resync when it returns")
            log.warning("subscriber of %s: %s", self.namespace, self.server_note,
                        extra={"action": "cache_file_start", "namespace": self.namespace})

    # ------------------------------------------------------------------ the reader

    async def _read_loop(self) -> None:
        sub = self._subscription
        if sub is None:  # pragma: no cover - start() sets it
            raise RuntimeError("subscriber not started")
        loop = asyncio.get_running_loop()
        backoff = Backoff(self._tuning.reconnect_backoff_max, base=0.05)
        while not self._closing:
            try:
                # A read that (re)connects must not hang on a link that swallows the
                # handshake: past the poll plus heartbeat_timeout, drop it and try again.
                async with asyncio.timeout(POLL_SECONDS + self._tuning.heartbeat_timeout):
                    msg = await sub.next(POLL_SECONDS)
                now = loop.time()
                if msg is not None:
                    self._link.last_rx = now
                    self._link.ping_sent = None
                    await self._on_message(msg)
                await self._heartbeat(sub, loop.time())
                backoff.reset()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closing or task is None or task.cancelling():
                    raise
                # A stray CancelledError (e.g. from a library call): not a request to stop.
                log.error("subscriber of %s: an operation was cancelled; resyncing",
                          self.namespace, extra={"action": "error", "namespace": self.namespace})
                await self._drop(sub, "cancelled operation")
                await asyncio.sleep(backoff.next())
            except Exception as exc:
                if isinstance(exc, BackendError):
                    reason = str(exc)
                    if not self._ready.is_set():
                        await self._start_from_cache_file(reason)
                elif isinstance(exc, TimeoutError):
                    reason = "no answer from the server (connecting or reading)"
                    if not self._ready.is_set():
                        await self._start_from_cache_file(reason)
                else:
                    log.exception("subscriber of %s: unexpected error; resyncing",
                                  self.namespace,
                                  extra={"action": "error", "namespace": self.namespace})
                    reason = "internal error"
                # Any failure means "we may have missed something": drop the link; the
                # re-subscribe confirmation triggers a resync.
                await self._drop(sub, reason)
                await asyncio.sleep(backoff.next())

    async def _heartbeat(self, sub: Subscription, now: float) -> None:
        """PING after silence; a PING without reply in time means the link is dead."""
        link = self._link
        if not link.connected:
            return
        if link.ping_sent is not None:
            if now - link.ping_sent > self._tuning.heartbeat_timeout:
                self.stats.heartbeat_timeouts += 1
                log.warning("subscriber of %s: no heartbeat reply in %.1fs; reconnecting",
                            self.namespace, self._tuning.heartbeat_timeout,
                            extra={"action": "heartbeat_timeout", "namespace": self.namespace})
                await self._drop(sub, "heartbeat timeout")
        elif now - link.last_rx > self._tuning.heartbeat_interval:
            link.ping_sent = now
            async with asyncio.timeout(self._tuning.heartbeat_timeout):
                await sub.ping()

    async def _drop(self, sub: Subscription, reason: str) -> None:
        self._link_failed(reason)
        try:
            async with asyncio.timeout(self._tuning.heartbeat_timeout):
                await sub.drop()
        except (BackendError, TimeoutError) as exc:
            log.debug("closing the subscription failed: %s", exc)

    async def _on_message(self, msg: Message) -> None:
        kind = msg.kind
        if kind == "config" or kind == "invalidate":
            if self._resyncing:
                self._keep(msg)
            else:
                await self._on_event(msg)
        elif kind == "subscribed":
            if self._link.ever_connected:
                self.stats.reconnects += 1
                log.info("subscriber of %s re-subscribed; resyncing", self.namespace,
                         extra={"action": "reconnected", "namespace": self.namespace})
            self._link.ever_connected = True
            self._set_connected(True, "subscribed")
            self._request("catch-up", "subscribed", invalidations=True)
        elif kind == "unsubscribed" and self._subscription is not None:
            # The server moved the channel (a cluster slot migrated): like a dropped link.
            await self._drop(self._subscription, "unsubscribed by the server")

    def _keep(self, msg: Message) -> None:
        if len(self._buffer) >= MAX_BUFFERED:
            self._buffer.clear()
            self._overflowed = True  # the resync ends with a load instead
        if not self._overflowed:
            self._buffer.append(msg)

    # ------------------------------------------------------------------ events

    async def _on_event(self, msg: Message) -> None:
        try:
            env = decode_event(msg.data, key=self._key, max_bytes=self._max_bytes)
            if env.namespace != self.namespace:
                raise ProtocolError(f"event for namespace {env.namespace!r}")
            if (env.kind == "invalidate") != (msg.kind == "invalidate"):
                raise ProtocolError(f"{env.kind} event on the {msg.kind} channel")
        except ProtocolError as exc:
            self._rejected_message(exc)
            return
        if env.kind == "invalidate":
            await self._on_invalidation(env)
            return
        decision = on_event(self._pos, epoch=env.epoch, version=env.version,
                            checksum=env.checksum, reset=env.reset,
                            replay_limit=self._tuning.replay_limit)
        verdict = decision.verdict
        if verdict is Verdict.APPLY:
            if not await self._apply(env):
                self._request("load", "an event does not match the settings held")
        elif verdict is Verdict.REPLAY:
            self._request("catch-up", decision.reason)
        elif verdict is Verdict.LOAD:
            self._request("load", decision.reason)
        elif verdict is Verdict.REJECT:
            self._rejected_message(ProtocolError(decision.reason))

    def _rejected_message(self, exc: ProtocolError) -> None:
        self.stats.rejected_messages += 1
        log.warning("subscriber of %s: ignored a message: %s", self.namespace, exc,
                    extra={"action": "rejected_message", "namespace": self.namespace})

    async def _apply(self, env: Envelope) -> bool:
        """Apply the next config or canary event; False if it does not fit what we hold (its
        checksum or an ``old`` value disagrees): the caller then loads the namespace."""
        if env.kind == "canary":
            if env.checksum != self._pos.checksum:
                return False
            self._pos = Position(env.epoch, env.version, self._pos.checksum)
            await self._set_canary(env.canary if isinstance(env.canary, Canary) else None,
                                   env)
            self._advanced()
            return True
        checksum = self._digester.advance(self._pos.checksum, env.changes)
        if checksum != env.checksum or not self._olds_match(env.changes):
            self.stats.mismatches += 1
            log.warning("subscriber of %s: v%d does not apply to v%d (checksum or old values "
                        "differ); loading", self.namespace, env.version, self._pos.version,
                        extra={"action": "mismatch", "namespace": self.namespace})
            return False
        changes = env.value_changes()
        self.stats.events += 1
        self._pos = Position(env.epoch, env.version, checksum)
        tree: Tree | None = None
        cur = self._current
        # The served tree is patched only when it is the state the event applies to (not
        # while last known settings are kept over a lost namespace, a canary, a rejection).
        same = cur.flat is self._raw_flat
        if self.last_error is None and not self._canary_applies() and same:
            patched = patch_tree(cur.nested, cur.index, changes)  # only what changed
            if patched is not None:
                flat = dict(cur.flat)
                for ch in changes:
                    if ch.op == "set":
                        flat[ch.key] = ch.new
                    else:
                        flat.pop(ch.key, None)
                tree = (patched[0], flat, patched[1])
        if tree is not None:
            self._raw_flat = tree[1]
        else:
            flat = dict(self._raw_flat)
            for ch in changes:
                if ch.op == "set":
                    flat[ch.key] = ch.new
                else:
                    flat.pop(ch.key, None)
            self._raw_flat = flat
        if isinstance(env.canary, Canary) or env.canary is None:
            self._canary = env.canary  # a promote ends the canary with the same event
        await self._settle(env.version, changes if same else None, env.source, env.origin,
                           env.ts, False, tree=tree)
        if env.ack:
            self._wake_backstop.set()  # report the applied version now (publish --wait)
        self._advanced()
        return True

    def _olds_match(self, changes: Sequence[LeafChange]) -> bool:
        flat = self._raw_flat
        for ch in changes:
            held = flat.get(ch.key, MISSING)
            if ch.old is None:
                if held is not MISSING:
                    return False
            elif held is MISSING or not same_value(_parse(ch.old), held):
                return False
        return True

    async def _on_invalidation(self, env: Envelope) -> None:
        decision = on_invalidation(self._ipos, env.epoch, env.seq,
                                   replay_limit=self._tuning.replay_limit)
        verdict = decision.verdict
        if verdict is Verdict.APPLY:
            self._ipos = (env.epoch, env.seq)
            self.stats.invalidations += 1
            await self._events.invalidation(Invalidation(
                self.namespace, env.seq, env.keys, env.prefixes, env.all, env.origin,
                env.source))
        elif verdict is Verdict.REPLAY:
            self._request(None, decision.reason, invalidations=True)
        elif verdict is Verdict.ADOPT:
            # Another invalidation history (or a gap too large to replay): drop everything.
            self._ipos = (env.epoch, env.seq)
            await self._flush_caches(env.seq)

    async def _flush_caches(self, seq: int) -> None:
        await self._events.invalidation(Invalidation(
            self.namespace, seq, all=True, source="resync", reason="resync"))

    # ------------------------------------------------------------------ settling

    async def _settle(self, version: int, changes: tuple[Change, ...] | None, source: str,
                      origin: str, ts: float, resync: bool, notify: bool = True,
                      tree: Tree | None = None) -> None:
        """Validate the effective state; swap it in if valid, keep the last good one if not."""
        old = self._current
        recovering = self.last_error is not None
        if self._canary_applies():
            tree = None
            flat = self._effective_flat()
        else:
            flat = self._raw_flat
        try:
            new = self._build(version, flat, tree)
        except SettingsRejected as exc:
            self.stats.rejected_settings += 1
            self.last_error = str(exc)
            self.stats.last_rejected_version = version
            log.error("subscriber of %s: rejected v%d, keeping v%d: %s", self.namespace,
                      version, old.version, exc,
                      extra={"action": "rejected", "namespace": self.namespace,
                             "version": version})
            self._wake_backstop.set()  # presence shows the rejection at once
            return
        self.last_error = None
        self._swap(new)
        self._applied_epoch, old_epoch = self._pos.epoch, self._applied_epoch
        self._applied_at = time.time()
        self._ready.set()
        if self.cache_file is not None and self._cache_write is None:
            self._cache_write = asyncio.get_running_loop().create_task(self._write_cache())
        if not notify or not self._events.wants_changes:
            return  # the initial load is not a change; and nobody would hear of it
        if changes is None or recovering or (tree is None and self._canary_applies()):
            changes = diff_values(old.flat, new.flat)
        changes = _read_only(changes)  # listeners must not reach into the live settings
        if changes:
            await self._events.change(SettingsChange(
                self.namespace, version, changes, old.settings, new.settings, source, origin,
                ts, resync, self._pos.epoch, old_epoch))

    def _empty_settings(self) -> Any:
        return self._build(0, {}).settings if self.model is None else None

    def _build(self, version: int, flat: dict[str, Any], tree: Tree | None = None) -> Current:
        if tree is None:
            nested = unflatten(flat)
            index = index_tree(nested)[1]
        else:
            nested, flat, index = tree
        if self.model is None:
            settings: Any = FrozenSettings(nested)
        else:
            try:
                settings = self.model.model_validate(nested)
            except pydantic.ValidationError as exc:
                raise SettingsRejected(describe_validation(exc)) from None
            except Exception as exc:  # a broken model must not break the subscriber
                raise SettingsRejected(
                    f"{self.model.__name__} raised {type(exc).__name__}: {exc}") from None
        return Current(version, flat, nested, settings, index)

    def _swap(self, new: Current) -> None:
        self._current = new
        self.get = new.index.get
        for hook in self._swap_hooks:
            hook(new)

    # ------------------------------------------------------------------ canaries (§10)

    def _canary_id(self) -> str | None:
        canary = self._canary
        return canary.id if canary is not None and self._canary_applies() else None

    def _canary_applies(self) -> bool:
        canary = self._canary
        return canary is not None and target_matches(canary, service=self.service,
                                                     instance=self.instance)

    def _effective_flat(self) -> dict[str, Any]:
        canary = self._canary
        flat = dict(self._raw_flat)
        if canary is not None:
            for leaf in canary.changes:  # the canary overrides (§10): keys above and below go
                ch = value_change(leaf)
                below = ch.key + "."
                for k in [k for k in flat if k.startswith(below)]:
                    del flat[k]
                end = ch.key.find(".")
                while end >= 0:
                    flat.pop(ch.key[:end], None)
                    end = ch.key.find(".", end + 1)
                if ch.op == "set":
                    flat[ch.key] = ch.new
                else:
                    flat.pop(ch.key, None)
        return flat

    async def _set_canary(self, canary: Canary | None, env: Envelope) -> None:
        before = self._canary_applies()
        self._canary = canary
        if before or self._canary_applies():
            await self._settle(env.version, None, env.source, env.origin, env.ts, False)
        elif self.last_error is None:
            self._current = dataclasses.replace(self._current, version=env.version)
        self._wake_backstop.set()

    # ------------------------------------------------------------------ the syncer

    def _request(self, job: _Job | None, reason: str, *, invalidations: bool = False) -> None:
        """Ask the syncer to read the server: a catch-up (replay if possible) or a load."""
        if job == "load" or (job is not None and self._job is None):
            self._job = job
            self._job_reason = reason
        self._inv_job = self._inv_job or invalidations
        if not self._resyncing:
            self._resyncing = True
            self._events.set_trusted(False)
        self._wake_syncer.set()

    async def _sync_loop(self) -> None:
        backoff = Backoff(self._tuning.reconnect_backoff_max, base=0.05)
        while not self._closing:
            await self._wake_syncer.wait()
            self._wake_syncer.clear()
            while ((self._job is not None or self._inv_job) and self._link.connected
                   and not self._closing):
                job, reason, inv = self._job, self._job_reason, self._inv_job
                self._job, self._inv_job = None, False
                try:
                    async with asyncio.timeout(self._tuning.command_timeout):
                        if job is not None:
                            await self._resync(job, reason)
                        if inv:
                            await self._resync_invalidations()
                    await self._drain()
                    backoff.reset()
                except (BackendError, TimeoutError, ProtocolError) as exc:
                    what = str(exc) or "timed out"
                    log.warning("subscriber of %s: resync failed (%s); retrying",
                                self.namespace, what,
                                extra={"action": "resync_failed", "namespace": self.namespace})
                    self.last_error = self.last_error or f"resync failed: {what}"
                    if job is not None:
                        self._job = "load" if isinstance(exc, ProtocolError) else job
                        self._job_reason = reason
                    self._inv_job = self._inv_job or inv
                    await asyncio.sleep(backoff.next())
            if self._job is None and not self._inv_job:
                self._resyncing = False
                if self._link.connected:
                    self._events.set_trusted(True)

    async def _drain(self) -> None:
        """Process the events that arrived while the syncer read the server."""
        if self._overflowed:
            self._overflowed = False
            self._buffer.clear()
            self._job = "load"
            self._job_reason = "too many events arrived during a resync"
            return
        while self._buffer and self._job is None:
            await self._on_event(self._buffer.popleft())

    async def _resync(self, job: _Job, reason: str) -> None:
        self.stats.resyncs += 1
        start = self._pos
        replayed = False
        if job == "catch-up" and start.version >= 0:
            decision = await self._head_decision(start)
            if decision.verdict is Verdict.NOTHING:
                self._resync_done(start, reason, replayed)
                return
            if decision.verdict is Verdict.REPLAY:
                replayed = await self._replay(decision.first, decision.last)
            elif decision.verdict is Verdict.HOLD:
                self._hold(decision.reason)
                return
        if not replayed:
            await self._load(reason, first=start.version < 0)
        self._resync_done(start, reason, replayed)

    def _resync_done(self, start: Position, reason: str, replayed: bool) -> None:
        if self._pos.version >= 0 and self._current.settings is not None:
            self._ready.set()
        self._wake_backstop.set()  # report the (new) state in the presence record now
        if start.version < 0:
            log.info("subscriber of %s loaded v%d", self.namespace, self._pos.version,
                     extra={"action": "loaded", "namespace": self.namespace,
                            "version": self._pos.version})
        elif (start.epoch, start.version) != (self._pos.epoch, self._pos.version):
            log.info("subscriber of %s resynced v%d -> v%d (%s, %s)", self.namespace,
                     start.version, self._pos.version, reason,
                     "replayed" if replayed else "loaded",
                     extra={"action": "resynced", "namespace": self.namespace,
                            "version": self._pos.version})
            asyncio.get_running_loop().create_task(self._events.resync(Resync(
                self.namespace, reason, start.version, self._pos.version, replayed)))

    async def _head_decision(self, start: Position) -> Decision:
        """§8 step 7 on a fresh read of the head; a head behind ours (a lagging replica, when
        reads go to replicas) is read again from the primary before anything is concluded."""
        head = _head_of(await self.transport.head(self.namespace))
        decision = on_head(start, head[0], head[1], head[2], recheck=True,
                           replay_limit=self._tuning.replay_limit)
        if decision.verdict is Verdict.HOLD:
            head = _head_of(await self.transport.head(self.namespace, primary=True))
            decision = on_head(start, head[0], head[1], head[2], recheck=True,
                               replay_limit=self._tuning.replay_limit)
        return decision

    async def _replay(self, first: int, last: int) -> bool:
        """Apply versions ``first..last`` from the change log; False if it cannot cover them."""
        entries = await self.transport.read_log(self.namespace, first, last)
        if len(entries) != last - first + 1:  # a lagging replica? then the primary's log
            entries = await self.transport.read_log(self.namespace, first, last, primary=True)
        if len(entries) != last - first + 1:
            return False  # trimmed: load instead
        envs = []
        for data in entries:
            try:
                env = decode_event(data, key=self._key, max_bytes=self._max_bytes)
            except ProtocolError as exc:
                log.warning("subscriber of %s: bad log entry: %s", self.namespace, exc)
                return False
            envs.append(env)
        expected = first
        for env in envs:
            if (env.namespace != self.namespace or env.kind == "invalidate"
                    or env.version != expected
                    or (self._pos.epoch is not None and env.epoch != self._pos.epoch)):
                return False
            expected += 1
        self.stats.replays += 1
        for env in envs:
            if not await self._apply(env):
                return False
        return True

    async def _load(self, reason: str, *, first: bool) -> None:
        state = await self._read_state(primary=False)
        if not first and on_load(self._pos, state.epoch, state.version).verdict is Verdict.HOLD:
            state = await self._read_state(primary=True)  # not a lagging replica's view
        await self._adopt(state, reason, first=first)

    async def _read_state(self, *, primary: bool) -> loading.State:
        raw = await self.transport.load(self.namespace, max_tail=loading.MAX_TAIL,
                                        primary=primary)
        state = loading.assemble(self.namespace, raw, key=self._key, max_bytes=self._max_bytes)
        if state is loading.NEED_LEAVES:
            raw_leaves = await self.transport.load_leaves(self.namespace, primary=primary)
            state = loading.assemble_leaves(self.namespace, raw_leaves, key=self._key,
                                            inv=decode_invalidation_head(raw.inv))
        if not isinstance(state, loading.State):  # pragma: no cover - assemble_leaves returns one
            raise ProtocolError("no state loaded")
        return state

    async def _adopt(self, state: loading.State, reason: str, *, first: bool) -> None:
        if state.legacy and not self.server_note:
            self.server_note = ("the namespace is still in protocol 1: following its last "
                                "settings until a protocol-2 publisher migrates it")
            log.warning("subscriber of %s: %s", self.namespace, self.server_note,
                        extra={"action": "legacy", "namespace": self.namespace})
        if (state.epoch is None and state.version == 0 and not first
                and (not self._pos.absent or self._applied_epoch is not None)):
            # Redis lost the namespace (restart without persistence, flush): keep serving the
            # last known settings until a publisher writes the namespace again.
            self._pos = Position(None, 0, EMPTY_CHECKSUM)
            self._raw_flat = {}
            self.server_note = ("the namespace has no state on the server (Redis restarted "
                                "or flushed?); keeping the last known settings")
            log.warning("subscriber of %s: %s", self.namespace, self.server_note,
                        extra={"action": "reset", "namespace": self.namespace})
            await self._flush_caches(0)
            self._advanced()
            return
        decision = on_load(self._pos, state.epoch, state.version)
        if decision.verdict is Verdict.HOLD:
            self._hold(decision.reason)
            return
        self.stats.reloads += 1
        if self._ipos[1] < 0:
            # The first load reads the invalidation head with the settings: the caches start
            # from it, so an invalidation sent once `start()` has returned is never taken
            # for one sent before (§9).
            inv = state.inv
            self._ipos = (inv.epoch, inv.seq) if inv is not None else (None, 0)
        if not state.legacy:
            self.server_note = None
        self._pos = Position(state.epoch, state.version, state.checksum)
        self._raw_flat = state.tree[1]
        self._canary = state.canary
        if not first and decision.reason != "created":
            # Events were missed and could not be replayed: caches must forget everything.
            # (Not when the namespace was absent: it was just created, nothing was missed.)
            await self._flush_caches(self._ipos[1])
        await self._settle(state.version, None, "snapshot", "", state.updated_at, not first,
                           notify=not first or self._ready.is_set(), tree=state.tree)
        if self.last_error is None and self._current.version != state.version:
            self._current = dataclasses.replace(self._current, version=state.version)
        self._advanced()

    def _hold(self, reason: str) -> None:
        """The server is behind us (or in an older epoch): never go backwards; report it."""
        reason = _HOLD_REASONS.get(reason, reason)
        if self.server_note != reason:
            self.server_note = reason
            self.stats.holds += 1
            log.error("subscriber of %s: %s; keeping v%d", self.namespace, reason,
                      self._pos.version,
                      extra={"action": "server_behind", "namespace": self.namespace})
            self._wake_backstop.set()

    async def _resync_invalidations(self) -> None:
        """§9 after a (re)connect or a gap: replay the invalidations missed, or drop
        everything when they cannot be replayed."""
        raw = await self.transport.head(self.namespace)
        head = decode_invalidation_head(
            {} if raw.inv_epoch is None else {b"epoch": raw.inv_epoch, b"seq": raw.inv_seq or b""})
        epoch, seq = (head.epoch, head.seq) if head is not None else (None, 0)
        decision = on_invalidation(self._ipos, epoch, seq, replay_limit=self._tuning.replay_limit,
                                   head=True)
        if decision.verdict is Verdict.REPLAY and epoch is not None:
            entries = await self.transport.read_invalidation_log(
                self.namespace, decision.first, decision.last)
            envs = []
            for data in entries:
                try:
                    envs.append(decode_event(data, key=self._key, max_bytes=self._max_bytes,
                                             namespace=self.namespace))
                except ProtocolError as exc:
                    log.warning("subscriber of %s: bad invalidation log entry: %s",
                                self.namespace, exc)
                    break
            if ([e.seq for e in envs] == list(range(decision.first, decision.last + 1))
                    and all(e.kind == "invalidate" and e.epoch == epoch for e in envs)):
                for env in envs:
                    await self._on_invalidation(env)
                return
        elif decision.verdict is not Verdict.ADOPT:
            if epoch is None:
                self._ipos = (None, 0)
            return
        first = self._ipos[1] < 0
        self._ipos = (epoch, seq)
        if not first:  # the first read is where we start: the caches hold nothing yet
            # another history, or events that cannot be replayed: drop everything
            await self._flush_caches(seq)

    # ------------------------------------------------------------------ the backstop

    async def _backstop_loop(self) -> None:
        interval = self._tuning.version_check_interval
        while not self._closing:
            try:
                async with asyncio.timeout(interval):
                    await self._wake_backstop.wait()
            except TimeoutError:
                pass
            self._wake_backstop.clear()
            if self._pos.version < 0:
                continue  # nothing to report or compare before the first load
            # The head is compared with what we held when it was read: the reader may apply
            # events while the reply is on its way (a head older than those is not behind).
            pos, ipos = self._pos, self._ipos
            try:
                async with asyncio.timeout(self._tuning.command_timeout):
                    raw = await self.transport.write_presence(
                        self.namespace, self.instance, self._presence().encode(),
                        ttl=3 * interval)
            except (BackendError, TimeoutError) as exc:
                log.debug("version check failed: %s", exc)
                continue
            if self._resyncing or not self._link.connected:
                continue  # the record says where we stand; the resync will compare
            try:
                head = _head_of(raw)
            except ProtocolError as exc:
                self._hold(f"the namespace's head on the server is unreadable ({exc}); keeping "
                           "the last good settings until a publisher recovers it")
                continue
            decision = on_head(pos, head[0], head[1], head[2], recheck=False,
                               replay_limit=self._tuning.replay_limit)
            if decision.verdict is Verdict.RECHECK or _invalidations_differ(raw, ipos):
                # events in flight (settings or invalidations) explain a moment behind
                await asyncio.sleep(RECHECK_SECONDS)
                pos, ipos = self._pos, self._ipos
                try:
                    async with asyncio.timeout(self._tuning.command_timeout):
                        raw = await self.transport.head(self.namespace)
                    head = _head_of(raw)
                except (BackendError, TimeoutError, ProtocolError):
                    continue
                decision = on_head(pos, head[0], head[1], head[2],
                                   recheck=decision.verdict is Verdict.RECHECK,
                                   replay_limit=self._tuning.replay_limit)
                if decision.verdict is Verdict.RECHECK:
                    continue  # it moved meanwhile: the next round looks again
            if decision.verdict is Verdict.HOLD:
                try:  # behind us? not a lagging replica's view: ask the primary
                    async with asyncio.timeout(self._tuning.command_timeout):
                        decision = await self._head_decision(pos)
                except (BackendError, TimeoutError, ProtocolError):
                    continue
            if decision.verdict in (Verdict.REPLAY, Verdict.LOAD):
                self._request("load" if decision.verdict is Verdict.LOAD else "catch-up",
                              f"version check: {decision.reason}")
            elif decision.verdict is Verdict.HOLD:
                self._hold(decision.reason)
            elif decision.verdict is Verdict.NOTHING and self.server_note and head[0]:
                self.server_note = None
            if _invalidations_differ(raw, ipos):
                self._request(None, "invalidation check", invalidations=True)

    def _presence(self) -> PresenceRecord:
        return own_record(
            instance=self.instance, service=self.service, version=self.version,
            epoch=self._applied_epoch, received_version=self._pos.version,
            link=self.link_state, canary=self._canary_id(),
            rejected=({"version": self.stats.last_rejected_version, "reason": self.last_error}
                      if self.last_error else None),
            started_at=self.started_at, applied_at=self._applied_at)

    # ------------------------------------------------------------------ link state

    def _trusted(self) -> bool:
        return self._link.connected and self._ready.is_set() and not self._resyncing

    def _link_failed(self, reason: str) -> None:
        self._link.last_failure = reason
        self._link.errors += 1
        self._link.ping_sent = None
        self._set_connected(False, reason)

    def _set_connected(self, up: bool, reason: str) -> None:
        link = self._link
        if up:
            link.down_logged = False
            link.connected = True
            return  # caches are trusted again only after the resync
        if link.connected:
            self._wake_backstop.set()  # the presence record says the link is down
        if link.connected or not link.down_logged:
            if not self._closing:
                log.warning("subscriber of %s: link down (%s); will resync on reconnect",
                            self.namespace, reason,
                            extra={"action": "disconnected", "namespace": self.namespace})
            link.down_logged = True
        link.connected = False
        self._events.set_trusted(False)


_HOLD_REASONS: Final = {
    "no-head": "the namespace has no state on the server (Redis restarted without persistence, "
               "or was flushed?); keeping the last known settings until it is published again",
    "behind": "the server holds an older version than this subscriber (restored from a backup, "
              "or replayed?); keeping the newer settings until a publisher recovers it",
    "older-epoch": "the server holds an older history (epoch) than this subscriber (restored "
                   "from a backup, or replayed?); keeping the newer settings until a publisher "
                   "recovers it",
    "legacy": "the server holds protocol-1 settings older than this subscriber's",
}


def _invalidations_differ(raw: RawHead, ipos: tuple[str | None, int]) -> bool:
    """Whether the invalidation head is not at ``ipos`` (what the subscriber held, §9)."""
    return (_text(raw.inv_epoch), _int(raw.inv_seq)) != ipos and not (
        raw.inv_epoch is None and ipos == (None, 0))


def _head_of(raw: Any) -> tuple[str | None, int, str]:
    """(epoch, version, checksum) of a `RawHead` (`ProtocolError` when malformed)."""
    return decode_head_triplet(raw.meta_epoch, raw.meta_version, raw.meta_checksum)


def _int(value: bytes | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return -1


def _parse(text: str) -> Any:
    from ..wire import parse_leaf_text

    return parse_leaf_text(text)


def _read_only(changes: tuple[Change, ...]) -> tuple[Change, ...]:
    """The changes with lists and objects as tuples and `FrozenSettings` (they are shared with
    the live settings tree)."""
    if all(type(c.new) not in (list, dict) and type(c.old) not in (list, dict) for c in changes):
        return changes
    return tuple(Change(c.op, c.key, wrap(c.old), wrap(c.new)) for c in changes)


def _text(value: bytes | str | None) -> str | None:
    if not value:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

