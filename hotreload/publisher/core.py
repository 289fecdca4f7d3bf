"""`AsyncPublisher`: the asyncio core of publishing (`Publisher` is its sync facade).

Every publish is one optimistic compare-and-set on the server: the client computes the next
state and envelope for ``expected version + 1`` and one Lua script checks the version, then
updates the snapshot, appends to the log and publishes, atomically. A lost race re-reads the
state and rebases, so racing publishers never duplicate, skip or reorder versions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from .. import protocol as p
from .._dotted import check_text
from .._gc import collect_startup_garbage
from .._inputs import check_version, flag, input_errors, mapping, strings
from ..config import HotReloadConfig, as_config
from ..connection import make_client, wrap_errors
from ..errors import ConflictError, HistoryError, InputError, ProtocolError
from ..subscriber.frozen import patch_tree

log = logging.getLogger("hotreload.publisher")

MAX_ATTEMPTS = 50

# KEYS: snapshot hash, log stream.
# ARGV: expected version, new version, settings json ('' = unchanged), checksum,
#       envelope, channel, log maxlen, updated_at, sig ('' = none), protocol, epoch.
# Returns {1, version, receivers} on success, {0, current version} on a lost race (another
# version, or the same version number in another epoch: the namespace was lost and rebuilt).
_PUBLISH_LUA = """
local cur = redis.call('HGET', KEYS[1], 'version')
if not cur then cur = '0' end
if cur ~= ARGV[1] then return {0, tonumber(cur)} end
if cur == '0' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[11])
elseif redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[11] then
  return {0, tonumber(cur)}
end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if top and tonumber(string.match(top[1], '^(%d+)')) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])  -- a log ahead of the snapshot (restored backup): start it anew
end
redis.call('HSET', KEYS[1], 'protocol', ARGV[10], 'version', ARGV[2], 'updated_at', ARGV[8])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'settings', ARGV[3], 'checksum', ARGV[4])
elseif cur == '0' then
  redis.call('HSET', KEYS[1], 'settings', '{}', 'checksum', ARGV[4])
end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'sig', ARGV[9]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], ARGV[2] .. '-0', 'e', ARGV[5])
local n = redis.call('PUBLISH', ARGV[6], ARGV[5])
return {1, tonumber(ARGV[2]), n}
"""


def default_origin() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish did. ``version`` is the version that holds the published values: a new
    one, or, when nothing changed (``changed`` is False, nothing was sent), the current one."""

    namespace: str
    version: int
    changed: bool
    changes: tuple[p.Change, ...] = ()
    receivers: int = 0


@dataclass(frozen=True, slots=True)
class RollbackPlan:
    """What a rollback would do: from the current version to the settings of ``to_version``."""

    namespace: str
    from_version: int
    to_version: int
    changes: tuple[p.Change, ...]
    settings: dict[str, Any]

    @property
    def flat(self) -> dict[str, Any]:
        return p.flatten(self.settings)


@dataclass(slots=True)
class _State:
    version: int
    epoch: str
    checksum: str
    flat: dict[str, Any]
    nested: dict[str, Any]


class AsyncPublisher:
    """Publishes settings changes and cache invalidations for one or more namespaces."""

    def __init__(
        self,
        config: HotReloadConfig | str | None = None,
        *,
        namespace: str | None = None,
        source: str = "api",
        origin: str | None = None,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.config = as_config(config)
        with input_errors():
            self.namespace = p.check_name(
                self.config.namespace if namespace is None else namespace, "namespace")
            self.source = check_text(source, "source")
            self.origin = check_text(origin or default_origin(), "origin")
        self._hmac = self.config.security.key_bytes()
        self._own_client = client is None
        self.redis = client if client is not None else make_client(self.config)
        self._script: AsyncScript = self.redis.register_script(_PUBLISH_LUA)
        self._states: dict[str, _State] = {}
        self._keys: dict[str, p.Keys] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        collect_startup_garbage()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self.redis.aclose()

    def _ns(self, namespace: str | None) -> str:
        """The namespace of a call: ours unless given (an empty one is an error, not ours)."""
        return self.namespace if namespace is None else namespace

    def keys(self, namespace: str | None = None) -> p.Keys:
        ns = self._ns(namespace)
        keys = self._keys.get(ns)
        if keys is None:
            keys = self._keys[ns] = p.keys_for(ns, self.config.prefix)
        return keys

    # ------------------------------------------------------------------ reads

    async def snapshot(self, namespace: str | None = None) -> p.Snapshot:
        """The current snapshot (version 0 and ``{}`` for a namespace never published)."""
        ns = self._ns(namespace)
        async with wrap_errors(f"reading the snapshot of {ns!r}"):
            fields = await self.redis.hgetall(self.keys(ns).snapshot)
        return p.decode_snapshot(ns, fields, hmac_key=self._hmac)

    async def _current(self, ns: str) -> tuple[int, str]:
        async with wrap_errors(f"reading the version of {ns!r}"):
            version, epoch = await self.redis.hmget(self.keys(ns).snapshot, ["version", "epoch"])
        text = epoch.decode() if isinstance(epoch, bytes) else (epoch or "")
        return int(version or 0), text

    async def version(self, namespace: str | None = None) -> int:
        ns = self._ns(namespace)
        async with wrap_errors(f"reading the version of {ns!r}"):
            raw = await self.redis.hget(self.keys(ns).snapshot, "version")
        return int(raw or 0)

    async def history(
        self, namespace: str | None = None, *, limit: int = 20, since: int = 0
    ) -> list[p.Envelope]:
        """The newest ``limit`` events of the log (oldest first), or all after ``since``."""
        ns = self._ns(namespace)
        key = self.keys(ns).log
        async with wrap_errors(f"reading the log of {ns!r}"):
            if since:
                entries = await self.redis.xrange(key, min=f"{since + 1}", max="+")
            else:
                entries = list(reversed(await self.redis.xrevrange(key, count=limit) or []))
        return p.decode_log(ns, entries or [], hmac_key=self._hmac,
                            max_bytes=self.config.security.max_message_bytes)

    async def subscribers(self, namespace: str | None = None) -> int:
        """How many connections listen on the namespace's channel."""
        channel = self.keys(namespace).channel
        async with wrap_errors("reading PUBSUB NUMSUB"):
            result = await self.redis.pubsub_numsub(channel)
        return int(result[0][1]) if result else 0

    # ------------------------------------------------------------------ writes

    async def publish(
        self,
        changes: Mapping[str, Any] | None = None,
        delete: Iterable[str] = (),
        *,
        namespace: str | None = None,
        source: str | None = None,
    ) -> PublishResult:
        """Set and delete dotted keys as one event with one version (no-op if nothing changes).

        A bad argument raises `InputError` before anything is sent."""
        with input_errors():
            sets = dict(mapping({} if changes is None else changes, "changes"))
            deletes = list(strings(delete, "delete"))
            p.update({}, sets, deletes)  # every check, before any I/O
            ns, src = self._target(namespace, source)
        return await self._commit(ns, src, lambda flat: p.update(flat, sets, deletes))

    async def replace(
        self, document: Mapping[str, Any], *, namespace: str | None = None,
        source: str | None = None,
    ) -> PublishResult:
        """Make the namespace's settings exactly ``document``: one event with the diff."""
        with input_errors():
            p.check_json_value(mapping(document, "the document"), "document")
            target = p.flatten(p.loads(p.canonical_json(document)))  # a private deep copy
            ns, src = self._target(namespace, source)
        return await self._commit(ns, src, lambda _flat: target)

    async def invalidate(
        self,
        keys: Sequence[str] = (),
        prefixes: Sequence[str] = (),
        *,
        everything: bool = False,
        namespace: str | None = None,
        source: str | None = None,
    ) -> PublishResult:
        """Tell every subscriber's caches to drop ``keys``, ``prefixes`` (or everything)."""
        with input_errors():
            ikeys, iprefixes = strings(keys, "keys"), strings(prefixes, "prefixes")
            if not (flag(everything, "everything") or ikeys or iprefixes):
                raise InputError("invalidate needs keys, prefixes or everything=True")
            ns, src = self._target(namespace, source)
        return await self._commit(ns, src, None, invalidation=(ikeys, iprefixes, everything))

    async def plan_rollback(self, to_version: int, *,
                            namespace: str | None = None) -> RollbackPlan:
        """What `rollback` to ``to_version`` would change now (nothing is published)."""
        with input_errors():
            check_version(to_version, "rollback needs a version number")
            ns, _ = self._target(namespace, None)
        snap = await self.snapshot(ns)
        if not 0 <= to_version <= snap.version:
            raise HistoryError(f"version {to_version} is not between 0 and {snap.version}")
        events = await self.history(ns, since=to_version) if to_version < snap.version else []
        expected = list(range(to_version + 1, snap.version + 1))
        got = [e.version for e in events if e.version <= snap.version]
        if got != expected:
            raise HistoryError(
                f"the event log of {ns!r} no longer holds every event after version {to_version}"
            )
        flat = snap.flat
        for env in reversed(events):
            if env.version <= snap.version and env.kind == "config":
                flat = p.revert_changes(flat, env.changes)
        return RollbackPlan(ns, snap.version, to_version, p.diff(snap.flat, flat),
                            p.unflatten(flat))

    async def rollback(
        self, to_version: int, *, namespace: str | None = None, source: str = "rollback",
        expected_version: int | None = None,
    ) -> PublishResult:
        """Publish the settings as they were at ``to_version`` (a new event, not a rewind).

        With ``expected_version`` (the ``from_version`` of a `plan_rollback` you showed), a
        namespace that has moved on since raises `ConflictError` and publishes nothing.
        """
        with input_errors():
            self._target(namespace, source)
            if expected_version is not None:
                check_version(expected_version, "expected_version must be a version number")
        plan = await self.plan_rollback(to_version, namespace=namespace)
        if expected_version is not None and plan.from_version != expected_version:
            raise _moved_on(plan.namespace, plan.from_version, expected_version)
        target = plan.flat
        return await self._commit(plan.namespace, source, lambda _flat: target,
                                  expected_version=expected_version)

    def _target(self, namespace: str | None, source: str | None) -> tuple[str, str | None]:
        """The checked namespace and source of a call."""
        ns = p.check_name(self._ns(namespace), "namespace")
        return ns, None if source is None else check_text(source, "source")

    # ------------------------------------------------------------------ the commit loop

    async def _load_state(self, ns: str) -> _State:
        snap = await self.snapshot(ns)
        epoch = snap.epoch if snap.version else secrets.token_hex(8)  # a new history
        state = _State(snap.version, epoch, snap.checksum, snap.flat, snap.settings)
        self._states[ns] = state
        return state

    async def _commit(
        self,
        ns: str,
        source: str | None,
        compute: Any,
        *,
        invalidation: tuple[tuple[str, ...], tuple[str, ...], bool] | None = None,
        expected_version: int | None = None,
    ) -> PublishResult:
        p.check_name(ns, "namespace")
        lock = self._locks.setdefault(ns, asyncio.Lock())
        async with lock:
            state = self._states.get(ns)
            fresh = state is None
            if state is None or (expected_version not in (None, state.version)):
                state = await self._load_state(ns)
                fresh = True
            for attempt in range(MAX_ATTEMPTS):
                if expected_version is not None and state.version != expected_version:
                    raise _moved_on(ns, state.version, expected_version)
                result = await self._attempt(ns, state, source, compute, invalidation, fresh)
                if result is not None:
                    return result
                # Lost a race (or our cached state was stale): re-read and rebase.
                if attempt:
                    await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
                state = await self._load_state(ns)
                fresh = True
        raise ConflictError(f"gave up publishing to {ns!r} after {MAX_ATTEMPTS} lost races")

    async def _attempt(
        self,
        ns: str,
        state: _State,
        source: str | None,
        compute: Any,
        invalidation: tuple[tuple[str, ...], tuple[str, ...], bool] | None,
        fresh: bool,
    ) -> PublishResult | None:
        keys = self.keys(ns)
        version = state.version + 1
        now = time.time()
        settings_json = ""
        new_flat = state.flat
        new_nested = state.nested
        cs = state.checksum
        if invalidation is None:
            new_flat = compute(state.flat)
            changes = p.diff(state.flat, new_flat)
            if not changes:
                if fresh or await self._current(ns) == (state.version, state.epoch):
                    return PublishResult(ns, state.version, False)
                return None
            patched = patch_tree(state.nested, {}, changes)  # copies only the changed paths
            new_nested = patched[0] if patched is not None else p.unflatten(new_flat)
            encoded = p.encode_settings(new_nested)
            settings_json = encoded.decode()
            cs = p.checksum(encoded)
            env = p.Envelope(ns, version, "config", state.epoch, changes=changes, checksum=cs,
                             source=source or self.source, origin=self.origin, ts=now)
        else:
            ikeys, iprefixes, everything = invalidation
            changes = ()
            env = p.Envelope(ns, version, "invalidate", state.epoch, keys=ikeys,
                             prefixes=iprefixes,
                             all=everything, source=source or self.source, origin=self.origin,
                             ts=now)
        data = p.encode_envelope(env, self._hmac)
        if len(data) > self.config.security.max_message_bytes:
            raise ProtocolError(
                f"event of {len(data)} bytes exceeds security.max_message_bytes "
                f"({self.config.security.max_message_bytes}); publish fewer keys at once"
            )
        sig = (p.snapshot_signature(self._hmac, ns, state.epoch, version, cs)
               if self._hmac else "")
        async with wrap_errors(f"publishing to {ns!r}"):
            reply = await self._script(
                keys=[keys.snapshot, keys.log],
                args=[str(state.version), str(version), settings_json, cs, data, keys.channel,
                      str(self.config.log_maxlen), repr(now), sig, str(p.PROTOCOL_VERSION),
                      state.epoch],
            )
        if int(reply[0]) != 1:
            log.debug("lost publish race on %s at version %s", ns, state.version,
                      extra={"action": "publish_conflict", "namespace": ns})
            return None
        self._states[ns] = _State(version, state.epoch, cs, new_flat, new_nested)
        receivers = int(reply[2])
        if log.isEnabledFor(logging.INFO):
            log.info("published %s v%d (%s) to %d subscribers", ns, version, env.kind, receivers,
                     extra={"action": "published", "namespace": ns, "version": version,
                            "kind": env.kind, "source": env.source})
        return PublishResult(ns, version, True, changes, receivers)


def _moved_on(ns: str, version: int, expected: int) -> ConflictError:
    return ConflictError(f"{ns!r} is at v{version}, not v{expected}: it changed meanwhile; "
                         "nothing was published")
