"""`AsyncPublisher`: the asyncio core of publishing (`Publisher` is its sync facade).

Every publish is one optimistic compare-and-set on the server (the transport's commit, protocol
§7.1): the publisher computes the changes, the next checksum and the event for ``version + 1``
and the server applies them only if the namespace is still at ``version``. A lost race re-reads
the state and tries again, so racing publishers never duplicate, skip or reorder versions, and a
publish costs work in proportion to the keys it changes, whatever the namespace's size.

A publisher never starts a new history from a partial change: when the namespace is lost,
corrupt, or older on the server than what this publisher has seen, `publish` raises
`RecoveryNeeded`, while `replace` (the whole truth) recovers it into a new epoch, loudly
(protocol §7.3).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .._gc import collect_startup_garbage
from ..config import HotReloadConfig, as_config
from ..errors import (
    BackendError,
    ConflictError,
    HistoryError,
    InputError,
    ProtocolError,
    RecoveryNeeded,
)
from ..transport import Commit, Transport, open_transport
from ..wire import (
    MISSING,
    UNSET,
    Canary,
    CanaryTarget,
    Change,
    Digester,
    Envelope,
    Head,
    Keys,
    LeafChange,
    check_json_value,
    check_name,
    compare_epochs,
    decode_event,
    decode_head,
    decode_invalidation_head,
    decode_legacy_snapshot,
    diff_texts,
    encode_checkpoint,
    encode_event,
    encode_head,
    flatten,
    is_epoch,
    keys_for,
    legacy_notice,
    loads,
    new_epoch,
    unflatten,
    value_change,
)
from ..wire.legacy import LEGACY_TTL_SECONDS
from ..wire.presence import PresenceRecord, decode_presence
from ._inputs import check_text, check_version, flag, input_errors, mapping, strings
from .rollout import Rollout, in_scope, judge
from .salvage import Salvage, salvage
from .state import NamespaceState, plan_replace, plan_update, settings_json, value_changes
from .targets import parse_target

log = logging.getLogger("hotreload.publisher")

MAX_ATTEMPTS: Final = 50

Plan = Callable[[NamespaceState], tuple[list[LeafChange], dict[str, Any]]]
_Problem = Literal["lost", "corrupt", "stale", "legacy", "rebuild"]


def default_origin() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish did. ``version`` is the version that holds the published values: a new
    one, or, when nothing changed (``changed`` is False, nothing was sent), the current one.
    For an invalidation, ``version`` is its ``seq`` (invalidations are numbered apart)."""

    namespace: str
    version: int
    changed: bool
    changes: tuple[Change, ...] = ()
    receivers: int = 0
    epoch: str | None = None
    recovered: str | None = None
    """Why this publish started a new epoch (a recovery or a migration), else None."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The settings of a namespace at one version (version 0 and ``{}``: never published)."""

    namespace: str
    version: int
    checksum: str
    settings: dict[str, Any]
    updated_at: float = 0.0
    epoch: str = ""
    count: int = 0
    canary: Canary | None = None
    """The canary running in the namespace (docs/protocol.md §10), if any."""

    @property
    def flat(self) -> dict[str, Any]:
        return flatten(self.settings)


@dataclass(frozen=True, slots=True)
class RollbackPlan:
    """What a rollback would do: from the current version to the settings of ``to_version``."""

    namespace: str
    from_version: int
    to_version: int
    changes: tuple[Change, ...]
    settings: dict[str, Any]

    @property
    def flat(self) -> dict[str, Any]:
        return flatten(self.settings)


class AsyncPublisher:
    """Publishes settings changes and cache invalidations for one or more namespaces."""

    def __init__(
        self,
        config: HotReloadConfig | str | None = None,
        *,
        namespace: str | None = None,
        source: str = "api",
        origin: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.config = as_config(config)
        with input_errors():
            self.namespace = check_name(
                self.config.namespace if namespace is None else namespace, "namespace")
            self.source = check_text(source, "source")
            self.origin = check_text(origin or default_origin(), "origin")
        self._key = self.config.security.key_bytes()
        self._digester = Digester(self._key)
        self._own_transport = transport is None
        self.transport: Transport = transport if transport is not None else open_transport(
            self.config)
        self._states: dict[str, NamespaceState] = {}
        self._seen: dict[str, tuple[str, int]] = {}  # ns -> the newest (epoch, version) seen
        self._inv: dict[str, tuple[str, int] | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._checkpoints: dict[str, asyncio.Task[None]] = {}
        self._committed: set[str] = set()  # namespaces this publisher advanced
        collect_startup_garbage()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Write the checkpoints still behind of the namespaces this publisher advanced
        (bounded), then release the connections. A publisher that only read writes nothing."""
        for task in list(self._checkpoints.values()):
            task.cancel()
        for ns, state in list(self._states.items()):
            if (ns in self._committed and state.epoch is not None
                    and state.checkpoint_version < state.version):
                try:
                    async with asyncio.timeout(2.0):
                        await self._write_checkpoint(ns)
                except (BackendError, ProtocolError, TimeoutError) as exc:
                    log.debug("the checkpoint of %s was not written at close: %s", ns, exc)
        if self._own_transport:
            await self.transport.aclose()

    def _ns(self, namespace: str | None) -> str:
        """The namespace of a call: ours unless given (an empty one is an error, not ours)."""
        return self.namespace if namespace is None else namespace

    def _target(self, namespace: str | None, source: str | None) -> tuple[str, str | None]:
        """The checked namespace and source of a call."""
        ns = check_name(self._ns(namespace), "namespace")
        return ns, None if source is None else check_text(source, "source")

    def keys(self, namespace: str | None = None) -> Keys:
        """The Redis keys and channels of a namespace (docs/protocol.md §4)."""
        with input_errors():
            ns, _ = self._target(namespace, None)
        return keys_for(ns, self.config.prefix)

    # ------------------------------------------------------------------ reads

    async def snapshot(self, namespace: str | None = None) -> Snapshot:
        """The current settings (version 0 and ``{}`` for a namespace never published)."""
        with input_errors():
            ns, _ = self._target(namespace, None)
        state = await self._load(ns)
        return Snapshot(ns, state.version, state.checksum, unflatten(state.values),
                        state.updated_at, state.epoch or "", state.count, state.canary)

    async def version(self, namespace: str | None = None) -> int:
        """The namespace's current version on the server (0: never published)."""
        with input_errors():
            ns, _ = self._target(namespace, None)
        raw = await self.transport.head(ns, primary=True)
        try:
            return int(raw.meta_version or 0)
        except ValueError:
            raise ProtocolError(f"the head of {ns!r} holds a bad version", reason="field"
                                ) from None

    async def history(self, namespace: str | None = None, *, limit: int = 20,
                      since: int = 0) -> list[Envelope]:
        """The newest ``limit`` config events (oldest first), or all after ``since``."""
        with input_errors():
            ns, _ = self._target(namespace, None)
        if since:
            raw = await self.transport.read_log(ns, since + 1, primary=True)
        else:
            raw = list(reversed(await self.transport.read_log(ns, 1, count=limit, primary=True,
                                                              newest_first=True)))
        max_bytes = self.config.security.max_message_bytes
        return [decode_event(data, key=self._key, max_bytes=max_bytes, namespace=ns)
                for data in raw]

    async def subscribers(self, namespace: str | None = None) -> int:
        """How many connections listen on the namespace's config channel."""
        with input_errors():
            ns, _ = self._target(namespace, None)
        return await self.transport.subscribers(ns)

    # ------------------------------------------------------------------ writes

    async def publish(
        self,
        changes: Mapping[str, Any] | None = None,
        delete: Iterable[str] = (),
        *,
        namespace: str | None = None,
        source: str | None = None,
        ack: bool = False,
    ) -> PublishResult:
        """Set and delete dotted keys as one event with one version (no-op if nothing changes).

        ``ack``: subscribers report at once when they applied it (for `wait_applied`). A bad
        argument raises `InputError` before anything is sent. On a namespace that was lost, is
        corrupt or is older than this publisher has seen, raises `RecoveryNeeded`."""
        with input_errors():
            sets = dict(mapping({} if changes is None else changes, "changes"))
            deletes = list(strings(delete, "delete"))
            plan_update(NamespaceState(), sets, deletes)  # every check, before any I/O
            ns, src = self._target(namespace, source)
            flag(ack, "ack")
        return await self._commit(ns, src, lambda st: plan_update(st, sets, deletes),
                                  partial=True, ack=ack)

    async def replace(
        self, document: Mapping[str, Any], *, namespace: str | None = None,
        source: str | None = None, ack: bool = False,
    ) -> PublishResult:
        """Make the namespace's settings exactly ``document``: one event with the diff.

        When the namespace is lost, corrupt or older than this publisher has seen on the
        server, this starts a new epoch from ``document`` (logged as an error)."""
        with input_errors():
            check_json_value(mapping(document, "the document"), "document")
            doc = loads(_canonical(document))  # a private deep copy
            plan_replace(NamespaceState(), doc)
            ns, src = self._target(namespace, source)
            flag(ack, "ack")
        return await self._commit(ns, src, lambda st: plan_replace(st, doc), partial=False,
                                  ack=ack)

    async def plan(self, changes: Mapping[str, Any] | None = None, delete: Iterable[str] = (),
                   *, document: Mapping[str, Any] | None = None,
                   namespace: str | None = None) -> tuple[Change, ...]:
        """What `publish` (or `replace`, with ``document``) would change now; nothing is sent
        (``hotreload publish --dry-run``)."""
        with input_errors():
            ns, _ = self._target(namespace, None)
            sets = dict(mapping({} if changes is None else changes, "changes"))
            deletes = list(strings(delete, "delete"))
            doc = None if document is None else loads(_canonical(
                mapping(document, "the document")))
        state = await self._load(ns)
        with input_errors():
            leaf_changes, parsed = (plan_replace(state, doc) if doc is not None
                                    else plan_update(state, sets, deletes))
        return value_changes(state, leaf_changes, parsed)

    async def diff(self, from_version: int, to_version: int | None = None, *,
                   namespace: str | None = None) -> tuple[Change, ...]:
        """What changed from ``from_version`` to ``to_version`` (default: the current one) of the
        current epoch, from the change log (``hotreload diff``)."""
        with input_errors():
            check_version(from_version, "diff needs version numbers")
            if to_version is not None:
                check_version(to_version, "diff needs version numbers")
            ns, _ = self._target(namespace, None)
        state = await self._load(ns)
        upto = state.version if to_version is None else to_version
        for v in (from_version, upto):
            if not 0 <= v <= state.version:
                raise HistoryError(f"version {v} is not between 0 and {state.version}")
        old = await self._texts_at(ns, state, from_version)
        new = await self._texts_at(ns, state, upto)
        return tuple(value_change(ch) for ch in diff_texts(old, new))

    # ------------------------------------------------------------------ who runs what (§11)

    async def instances(self, namespace: str | None = None, *,
                        service: str | None = None) -> list[PresenceRecord]:
        """The live subscribers of a namespace (their presence records), by instance id;
        ``service``: only those whose service name matches this glob."""
        with input_errors():
            ns, _ = self._target(namespace, None)
        records = [decode_presence(raw) for raw in await self.transport.read_presence(ns)]
        return sorted((r for r in records if r is not None and in_scope(r, service)),
                      key=lambda r: r.instance)

    async def wait_applied(self, version: int, *, namespace: str | None = None,
                           epoch: str | None = None, timeout: float = 10.0,
                           service: str | None = None, poll: float = 0.05) -> Rollout:
        """Wait until every live subscriber in scope runs ``version`` (or a later one) of
        ``epoch`` (default: the namespace's current epoch), or ``timeout`` seconds pass.

        Returns the `Rollout` either way: ``complete``, or ``pending`` naming each instance
        that has not applied it and why (rejected by its model, disconnected, behind, another
        history); `Rollout.raise_for_incomplete` raises `RolloutIncomplete`. Publish with
        ``ack=True`` so subscribers report at once instead of at their next backstop.
        """
        with input_errors():
            check_version(version, "wait_applied needs a version number")
            ns, _ = self._target(namespace, None)
        if epoch is None:
            epoch = _text_or_none((await self.transport.head(ns, primary=True)).meta_epoch)
        deadline = time.monotonic() + timeout
        while True:
            rollout = judge(ns, await self.instances(ns, service=service), version, epoch,
                            service=service)
            if rollout.complete or time.monotonic() >= deadline:
                return rollout
            await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------------ canaries (§10)

    async def canary(
        self, changes: Mapping[str, Any] | None = None, delete: Iterable[str] = (), *,
        target: CanaryTarget | str, canary_id: str | None = None,
        namespace: str | None = None, source: str | None = None, ack: bool = False,
    ) -> PublishResult:
        """Apply a change to the instances ``target`` names only (docs/protocol.md §10); every
        other instance keeps the namespace's settings. ``target``: a `CanaryTarget` or text
        like ``service=api,instance=api-7*`` or ``10%`` (or both). `promote` publishes the
        canary's change to everyone; `abort` returns its instances to the namespace's settings.
        A new canary replaces a running one."""
        with input_errors():
            sets = dict(mapping({} if changes is None else changes, "changes"))
            deletes = list(strings(delete, "delete"))
            ns, src = self._target(namespace, source)
            tgt = parse_target(target) if isinstance(target, str) else target
            cid = check_name(canary_id or f"c{secrets.token_hex(4)}", "canary id")
            plan_update(NamespaceState(), sets, deletes)
        async with self._locks.setdefault(ns, asyncio.Lock()):
            for _ in range(MAX_ATTEMPTS):
                state = await self._current_state(ns)
                changes_, _parsed = plan_update(state, sets, deletes)
                if not changes_:
                    raise InputError("the canary changes nothing: every value is already set")
                new = Canary(cid, tgt, tuple(changes_), state.version)
                result = await self._canary_commit(ns, state, new, src, ack)
                if result is not None:
                    return result
                self._states.pop(ns, None)
        raise ConflictError(f"gave up starting a canary in {ns!r} after {MAX_ATTEMPTS} races")

    async def promote(self, *, namespace: str | None = None,
                      source: str | None = None, ack: bool = False) -> PublishResult:
        """Publish the running canary's change to every instance, and end the canary."""
        with input_errors():
            ns, src = self._target(namespace, source)
        async with self._locks.setdefault(ns, asyncio.Lock()):
            for _ in range(MAX_ATTEMPTS):
                state = await self._current_state(ns)
                if state.canary is None:
                    raise HistoryError(f"no canary runs in {ns!r}")
                sets = {c.key: value_change(c).new for c in state.canary.changes
                        if c.new is not None}
                deletes = [c.key for c in state.canary.changes if c.new is None]
                changes_, parsed = plan_update(state, sets, deletes)
                result = await self._next(ns, state, changes_, parsed, src, ack=ack,
                                          end_canary=True)
                if result is not None:
                    return result
                self._states.pop(ns, None)
        raise ConflictError(f"gave up promoting the canary of {ns!r} after {MAX_ATTEMPTS} races")

    async def abort(self, *, namespace: str | None = None,
                    source: str | None = None, ack: bool = False) -> PublishResult:
        """End the running canary: its instances return to the namespace's settings."""
        with input_errors():
            ns, src = self._target(namespace, source)
        async with self._locks.setdefault(ns, asyncio.Lock()):
            for _ in range(MAX_ATTEMPTS):
                state = await self._current_state(ns)
                if state.canary is None:
                    raise HistoryError(f"no canary runs in {ns!r}")
                result = await self._canary_commit(ns, state, None, src, ack)
                if result is not None:
                    return result
                self._states.pop(ns, None)
        raise ConflictError(f"gave up aborting the canary of {ns!r} after {MAX_ATTEMPTS} races")

    async def _current_state(self, ns: str) -> NamespaceState:
        """The state to build on: cached, or read; a namespace needing recovery is an error."""
        state = self._states.get(ns)
        if state is None or state.epoch is None:
            state, problem = await self._fresh_state(ns)
            if problem is not None:
                raise RecoveryNeeded(f"{ns!r}: {problem[1]}; publish the whole settings first",
                                     reason=problem[0])
            if state.epoch is None:
                raise HistoryError(f"namespace {ns!r} has never been published")
        return state

    async def _canary_commit(self, ns: str, state: NamespaceState, canary: Canary | None,
                             source: str | None, ack: bool) -> PublishResult | None:
        """A ``canary`` event: the head's canary set (or cleared); the state is unchanged."""
        if state.epoch is None:  # pragma: no cover - _current_state guarantees it
            raise RuntimeError("a canary needs an epoch")
        version = state.version + 1
        now = time.time()
        env = Envelope(ns, "canary", state.epoch, version=version, checksum=state.checksum,
                       canary=canary, ack=ack, source=source or self.source,
                       origin=self.origin, ts=now)
        data = self._encode(env)
        head = Head(ns, state.epoch, version, state.checksum, state.count, now, canary)
        commit = Commit(mode="next", expect=(state.epoch, str(state.version)),
                        meta=encode_head(head, key=self._key), sets={}, deletes=(),
                        event=data, version=version, log_maxlen=self.config.log_maxlen)
        result = await self.transport.commit(ns, commit)
        if not result.ok:
            return None
        state.version, state.updated_at, state.canary = version, now, canary
        self._saw(ns, state)
        self._log_published(ns, version, "canary", env.source, result.receivers)
        public = () if canary is None else tuple(value_change(c) for c in canary.changes)
        return PublishResult(ns, version, True, public, result.receivers, state.epoch)

    async def rebuild(
        self, document: Mapping[str, Any], *, namespace: str | None = None,
        source: str | None = None,
    ) -> PublishResult:
        """Make the namespace exactly ``document`` as version 1 of a new epoch, whatever the
        server holds (a repair: `hotreload repair`). Logged as an error; every subscriber
        loads the new epoch (newer than any epoch this publisher saw or finds on the server).
        """
        with input_errors():
            check_json_value(mapping(document, "the document"), "document")
            doc = loads(_canonical(document))
            plan_replace(NamespaceState(), doc)
            ns, src = self._target(namespace, source)
        return await self._commit(ns, src, lambda st: plan_replace(st, doc), partial=False,
                                  rebuild=True)

    async def salvage(self, namespace: str | None = None) -> Salvage:
        """What can still be read of the namespace on the server, without judging it: each
        key's state, the valid leaves (the document they make) and those that are not (with
        why), or the checkpoint's document when the leaves are unreadable. Publishes nothing;
        never fails on a damaged namespace (only when the server cannot be read).

        Kept leaves are readable, not proven authentic (leaves are not signed one by one):
        show them to a human before `rebuild` makes them the settings."""
        with input_errors():
            ns, _ = self._target(namespace, None)
        raw = await self.transport.survey(ns)
        return salvage(ns, raw, key=self._key, max_bytes=self.config.security.max_message_bytes,
                       checksum_of=self._digester.checksum_of)

    async def invalidate(
        self,
        keys: Sequence[str] = (),
        prefixes: Sequence[str] = (),
        *,
        everything: bool = False,
        namespace: str | None = None,
        source: str | None = None,
    ) -> PublishResult:
        """Tell every subscriber's caches to drop ``keys``, ``prefixes`` (or everything).

        Invalidations are numbered apart from settings versions (protocol §9): the result's
        ``version`` is the invalidation's ``seq``."""
        with input_errors():
            ikeys, iprefixes = strings(keys, "keys"), strings(prefixes, "prefixes")
            if not (flag(everything, "everything") or ikeys or iprefixes):
                raise InputError("invalidate needs keys, prefixes or everything=True")
            ns, src = self._target(namespace, source)
        max_bytes = self.config.security.max_message_bytes
        async with self._locks.setdefault(f"\x00inv:{ns}", asyncio.Lock()):
            for _ in range(MAX_ATTEMPTS):
                if ns not in self._inv:
                    raw = await self.transport.head(ns, primary=True)
                    head = decode_invalidation_head(
                        {} if raw.inv_epoch is None else
                        {b"epoch": raw.inv_epoch, b"seq": raw.inv_seq or b""})
                    self._inv[ns] = None if head is None else (head.epoch, head.seq)
                have = self._inv[ns]
                epoch, seq = have if have is not None else (new_epoch(), 0)
                env = Envelope(ns, "invalidate", epoch, seq=seq + 1, keys=ikeys,
                               prefixes=iprefixes, all=everything,
                               source=src or self.source, origin=self.origin, ts=time.time())
                data = encode_event(env, key=self._key)
                if len(data) > max_bytes:
                    raise ProtocolError(
                        f"an invalidation of {len(data)} bytes exceeds "
                        f"security.max_message_bytes ({max_bytes}); invalidate prefixes or "
                        "everything instead", reason="size")
                result = await self.transport.send_invalidation(
                    ns, expect=have, epoch=epoch, seq=seq + 1, event=data,
                    log_maxlen=self.config.log_maxlen)
                if result.ok:
                    self._inv[ns] = (epoch, seq + 1)
                    self._log_published(ns, seq + 1, "invalidate", env.source,
                                        result.receivers)
                    return PublishResult(ns, seq + 1, True, receivers=result.receivers,
                                         epoch=epoch)
                del self._inv[ns]  # lost a race: read the head again
        raise ConflictError(f"gave up invalidating in {ns!r} after {MAX_ATTEMPTS} lost races")

    async def plan_rollback(self, to_version: int, *,
                            namespace: str | None = None) -> RollbackPlan:
        """What `rollback` to ``to_version`` would change now (nothing is published)."""
        with input_errors():
            check_version(to_version, "rollback needs a version number")
            ns, _ = self._target(namespace, None)
        state = await self._load(ns)
        if not 0 <= to_version <= state.version:
            raise HistoryError(f"version {to_version} is not between 0 and {state.version}")
        texts = await self._texts_at(ns, state, to_version)
        target = {k: loads(t) for k, t in texts.items()}
        changes, parsed = plan_replace(state, unflatten(target))
        return RollbackPlan(ns, state.version, to_version,
                            value_changes(state, changes, parsed), unflatten(target))

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
        document = plan.settings
        return await self._commit(plan.namespace, source,
                                  lambda st: plan_replace(st, document), partial=False,
                                  expected_version=expected_version)

    async def _texts_at(self, ns: str, state: NamespaceState, version: int) -> dict[str, str]:
        """The leaves' texts at ``version`` of the current epoch, undone from the change log."""
        texts = dict(state.texts)
        if version == state.version:
            return texts
        events = [e for e in await self.history(ns, since=version) if e.version <= state.version]
        if ([e.version for e in events] != list(range(version + 1, state.version + 1))
                or any(e.epoch != state.epoch for e in events)):
            raise HistoryError(
                f"the change log of {ns!r} no longer holds every event after version {version}")
        for env in reversed(events):
            if env.reset:
                raise HistoryError(f"version {env.version} of {ns!r} began a new history; "
                                   "its earlier versions are not in the log")
            for ch in env.changes:
                if ch.old is None:
                    texts.pop(ch.key, None)
                else:
                    texts[ch.key] = ch.old
        return texts

    # ------------------------------------------------------------------ loading

    async def _load(self, ns: str) -> NamespaceState:
        """Read the whole state (the leaves' texts, checked against the head); remember it."""
        raw = await self.transport.load_leaves(ns, primary=True)
        head = decode_head(ns, raw.meta, key=self._key,
                           max_bytes=self.config.security.max_message_bytes)
        if head is None:
            state = NamespaceState()
        else:
            texts = {_text(k): _text(v) for k, v in raw.leaves.items()}
            if len(texts) != head.count or self._digester.checksum_of(texts) != head.checksum:
                raise ProtocolError(f"the leaves of {ns!r} do not match its head",
                                    reason="checksum")
            state = NamespaceState.from_texts(
                texts, {k: loads(t) for k, t in texts.items()}, epoch=head.epoch,
                version=head.version, checksum=head.checksum, canary=head.canary,
                updated_at=head.updated_at)
        self._states[ns] = state
        self._saw(ns, state)
        return state

    async def _fresh_state(self, ns: str) -> tuple[NamespaceState, tuple[_Problem, str] | None]:
        """The server's state, and what must be recovered before publishing on top of it (a
        state with a problem is not kept: the next call reads the server again)."""
        state, problem = await self._read_state(ns)
        if problem is not None:
            self._states.pop(ns, None)
        return state, problem

    async def _head_is(self, ns: str, state: NamespaceState) -> bool:
        """Whether the server's head is still the one ``state`` was read or written at. A
        replace checks it (one round trip) before concluding "no change", so a namespace lost,
        rolled back or damaged meanwhile is recovered by the next replace of the same document
        (the daemon's reconcile)."""
        try:
            raw = await self.transport.head(ns, primary=True)
        except BackendError as exc:
            if "WRONGTYPE" in str(exc):
                return False
            raise
        if state.epoch is None:  # nothing published: still nothing there?
            return raw.meta_epoch is None
        return (raw.meta_epoch == state.epoch.encode()
                and raw.meta_version == str(state.version).encode()
                and raw.meta_checksum == state.checksum.encode())

    async def _read_state(self, ns: str) -> tuple[NamespaceState, tuple[_Problem, str] | None]:
        seen = self._seen.get(ns)
        try:
            state = await self._load(ns)
        except ProtocolError as exc:
            return NamespaceState(), ("corrupt", f"its state on the server is unreadable: {exc}")
        except BackendError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            return NamespaceState(), ("corrupt", f"a key of it has the wrong type: {exc}")
        if state.epoch is None:
            if seen is not None:
                return state, ("lost", "the namespace has no state on the server any more "
                                       "(Redis restarted without persistence, or was flushed?)")
            raw = await self.transport.load(ns, max_tail=0, primary=True)
            if raw.legacy and decode_legacy_snapshot(ns, raw.legacy) is not None:
                return state, ("legacy", "the namespace is still in protocol 1")
            return state, None
        if seen is not None and _older(state, seen):
            return state, ("stale", f"the server holds v{state.version} of epoch {state.epoch}, "
                                    f"older than v{seen[1]} of epoch {seen[0]} that this "
                                    "publisher has seen (restored from a backup, or replayed?)")
        return state, None

    # ------------------------------------------------------------------ the commit loop

    async def _commit(self, ns: str, source: str | None, plan: Plan, *, partial: bool,
                      expected_version: int | None = None, ack: bool = False,
                      rebuild: bool = False) -> PublishResult:
        async with self._locks.setdefault(ns, asyncio.Lock()):
            state = self._states.get(ns)
            problem: tuple[_Problem, str] | None = None
            if rebuild:
                state, problem = NamespaceState(), ("rebuild", "rebuilt on request (a repair)")
            elif (state is None or state.epoch is None
                    or expected_version not in (None, state.version)):
                state, problem = await self._fresh_state(ns)
            recovered: str | None = None
            for _attempt in range(MAX_ATTEMPTS):
                if problem is not None:
                    kind, why = problem
                    if kind == "legacy":
                        state = await self._migrate(ns)
                        recovered = "migrated from protocol 1"
                    elif partial:
                        raise RecoveryNeeded(
                            f"cannot publish part of {ns!r}: {why}; publish the whole settings "
                            f"(replace(), hotreload publish --file) or run "
                            f"`hotreload repair -n {ns}`", reason=kind)
                    else:
                        log.error("recovering %s into a new epoch from the settings given: %s",
                                  ns, why, extra={"action": "recovered", "namespace": ns,
                                                  "reason": kind})
                        state, recovered = NamespaceState(), why
                    problem = None
                if expected_version is not None and state.version != expected_version:
                    raise _moved_on(ns, state.version, expected_version)
                changes, parsed = plan(state)
                if not changes and recovered is None:
                    if not partial and not await self._head_is(ns, state):
                        # A whole document that changes nothing here: the server may still
                        # have lost or rolled back the namespace (a changed one fails the
                        # compare-and-set instead); the daemon relies on this to republish.
                        state, problem = await self._fresh_state(ns)
                        if problem is not None or state.epoch is None:
                            continue
                        changes, parsed = plan(state)
                        if changes:
                            continue
                    return PublishResult(ns, state.version, False, epoch=state.epoch)
                if state.epoch is None:
                    result = await self._start_epoch(ns, changes, parsed, source, recovered)
                elif not changes:
                    return PublishResult(ns, state.version, False, epoch=state.epoch,
                                         recovered=recovered)
                else:
                    result = await self._next(ns, state, changes, parsed, source, ack=ack)
                if result is not None:
                    return result if recovered is None or result.recovered else \
                        _with_recovery(result, recovered)
                log.debug("lost a publish race on %s at v%d", ns, state.version,
                          extra={"action": "publish_conflict", "namespace": ns})
                if rebuild:
                    state, problem = NamespaceState(), ("rebuild", "rebuilt on request (a repair)")
                    recovered = None
                    continue
                state, problem = await self._fresh_state(ns)  # lost a race: catch up
        raise ConflictError(f"gave up publishing to {ns!r} after {MAX_ATTEMPTS} lost races")

    async def _next(self, ns: str, state: NamespaceState, changes: list[LeafChange],
                    parsed: dict[str, Any], source: str | None, *, ack: bool = False,
                    end_canary: bool = False) -> PublishResult | None:
        """§7.1: version + 1 of the current epoch, or None when the race was lost.

        ``end_canary``: the event also ends the running canary (a promote)."""
        if state.epoch is None:  # pragma: no cover - the callers start epochs first
            raise RuntimeError("a next version needs an epoch")
        version = state.version + 1
        now = time.time()
        checksum = self._digester.advance(state.checksum, changes)
        env = Envelope(ns, "config", state.epoch, version=version, checksum=checksum,
                       changes=tuple(changes), source=source or self.source,
                       origin=self.origin, ts=now, ack=ack,
                       canary=None if end_canary else UNSET)
        data = self._encode(env)
        count = state.count + sum((c.new is not None) - (c.old is not None) for c in changes)
        canary = None if end_canary else state.canary
        head = Head(ns, state.epoch, version, checksum, count, now, canary)
        commit = Commit(
            mode="next", expect=(state.epoch, str(state.version)),
            meta=encode_head(head, key=self._key),
            sets={c.key: c.new for c in changes if c.new is not None},
            deletes=[c.key for c in changes if c.new is None],
            event=data, version=version, log_maxlen=self.config.log_maxlen)
        result = await self.transport.commit(ns, commit)
        if not result.ok:
            return None
        public = value_changes(state, changes, parsed)
        state.apply(changes, parsed)
        state.version, state.checksum, state.updated_at = version, checksum, now
        state.canary = canary
        self._saw(ns, state)
        self._committed.add(ns)
        self._maybe_checkpoint(ns, state)
        self._log_published(ns, version, "config", env.source, result.receivers)
        return PublishResult(ns, version, True, public, result.receivers, state.epoch)

    async def _start_epoch(self, ns: str, changes: list[LeafChange], parsed: dict[str, Any],
                           source: str | None, recovered: str | None) -> PublishResult | None:
        """§7.3: create the namespace, or recover it, as version 1 of a new epoch."""
        token = await self.transport.head_token(ns)
        seen = self._seen.get(ns)
        after = seen[0] if seen else None
        found = token[2][1:] if len(token) > 2 and token[2].startswith("=") else None
        if is_epoch(found) and (after is None or compare_epochs(found, after) > 0):
            after = found  # the history being replaced: the new one must be newer
        epoch = new_epoch(after=after)
        fresh = NamespaceState()
        public = value_changes(fresh, changes, parsed)
        fresh.apply(changes, parsed)
        checksum = self._digester.checksum_of(fresh.texts)
        now = time.time()
        src = source or self.source
        env = Envelope(ns, "config", epoch, version=1, checksum=checksum,
                       changes=tuple(changes), source=src, origin=self.origin, ts=now)
        data = encode_event(env, key=self._key)
        if len(data) > self.config.security.max_message_bytes:
            env = Envelope(ns, "config", epoch, version=1, checksum=checksum, reset=True,
                           source=src, origin=self.origin, ts=now)
            data = self._encode(env)
        head = Head(ns, epoch, 1, checksum, fresh.count, now, None)
        checkpoint = encode_checkpoint(ns, epoch, 1, checksum, fresh.count,
                                       settings_json(fresh.texts).encode(), key=self._key)
        commit = Commit(mode="new", expect=token, meta=encode_head(head, key=self._key),
                        sets=dict(fresh.texts), deletes=(), event=data, version=1,
                        log_maxlen=self.config.log_maxlen, checkpoint=checkpoint)
        result = await self.transport.commit(ns, commit)
        if not result.ok:
            return None
        fresh.epoch, fresh.version, fresh.checksum, fresh.updated_at = epoch, 1, checksum, now
        fresh.checkpoint_version, fresh.checkpoint_at = 1, time.monotonic()
        self._states[ns] = fresh
        self._saw(ns, fresh)
        self._log_published(ns, 1, "config", src, result.receivers)
        return PublishResult(ns, 1, True, public, result.receivers, epoch, recovered)

    async def _migrate(self, ns: str) -> NamespaceState:
        """§13: start protocol 2 with the protocol-1 settings, then retire the old keys."""
        raw = await self.transport.load(ns, max_tail=0, primary=True)
        snap = decode_legacy_snapshot(ns, raw.legacy)
        if snap is None:
            return self._states.get(ns) or NamespaceState()
        changes, parsed = plan_replace(NamespaceState(), snap.settings)
        log.warning("migrating %s from protocol 1 (v%d) to protocol 2: a new epoch", ns,
                    snap.version, extra={"action": "migrated", "namespace": ns})
        result = await self._start_epoch(ns, changes, parsed, "migration",
                                         "migrated from protocol 1")
        if result is None:
            raise ConflictError(f"another publisher changed {ns!r} during its migration")
        await self.transport.retire_legacy(ns, legacy_notice(ns), LEGACY_TTL_SECONDS)
        return self._states[ns]

    # ------------------------------------------------------------------ checkpoints (§7.4)

    def _maybe_checkpoint(self, ns: str, state: NamespaceState) -> None:
        tuning = self.config.publisher
        lag = state.version - state.checkpoint_version
        if lag <= 0 or ns in self._checkpoints:
            return
        delay = 0.0 if lag >= tuning.checkpoint_every else max(
            0.0, state.checkpoint_at + tuning.checkpoint_interval - time.monotonic())
        self._checkpoints[ns] = asyncio.get_running_loop().create_task(
            self._checkpoint_later(ns, delay), name=f"hotreload-checkpoint-{ns}")

    async def _checkpoint_later(self, ns: str, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            async with self._locks.setdefault(ns, asyncio.Lock()):
                await self._write_checkpoint(ns)
        except (BackendError, ProtocolError) as exc:
            log.warning("could not write the checkpoint of %s: %s", ns, exc,
                        extra={"action": "checkpoint_failed", "namespace": ns})
        finally:
            self._checkpoints.pop(ns, None)

    async def _write_checkpoint(self, ns: str) -> None:
        state = self._states.get(ns)
        if state is None or state.epoch is None or state.checkpoint_version >= state.version:
            return
        fields = encode_checkpoint(ns, state.epoch, state.version, state.checksum, state.count,
                                   settings_json(state.texts).encode(), key=self._key)
        await self.transport.write_checkpoint(ns, state.epoch, state.version, fields)
        state.checkpoint_version, state.checkpoint_at = state.version, time.monotonic()

    # ------------------------------------------------------------------ helpers

    def _encode(self, env: Envelope) -> bytes:
        data = encode_event(env, key=self._key)
        limit = self.config.security.max_message_bytes
        if len(data) > limit:
            raise ProtocolError(
                f"an event of {len(data)} bytes exceeds security.max_message_bytes ({limit}); "
                "publish fewer keys at once", reason="size")
        return data

    def _saw(self, ns: str, state: NamespaceState) -> None:
        if state.epoch is None:
            return
        seen = self._seen.get(ns)
        if seen is None or _older(NamespaceState(epoch=seen[0], version=seen[1]),
                                  (state.epoch, state.version)):
            self._seen[ns] = (state.epoch, state.version)

    def _log_published(self, ns: str, version: int, kind: str, source: str,
                       receivers: int) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("published %s %s%d (%s) to %d subscribers", ns,
                     "seq " if kind == "invalidate" else "v", version, kind, receivers,
                     extra={"action": "published", "namespace": ns, "version": version,
                            "kind": kind, "source": source})


def _older(state: NamespaceState, seen: tuple[str, int]) -> bool:
    """Whether ``state`` is older than the (epoch, version) ``seen`` (never for no epoch)."""
    if state.epoch is None:
        return False
    if state.epoch == seen[0]:
        return state.version < seen[1]
    return compare_epochs(state.epoch, seen[0]) < 0


def _with_recovery(result: PublishResult, why: str) -> PublishResult:
    return PublishResult(result.namespace, result.version, result.changed, result.changes,
                         result.receivers, result.epoch, why)


def _moved_on(ns: str, version: int, expected: int) -> ConflictError:
    return ConflictError(f"{ns!r} is at v{version}, not v{expected}: it changed meanwhile; "
                         "nothing was published")


def _canonical(document: Mapping[str, Any]) -> str:
    import json

    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=_not_json)


def _not_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    raise InputError(f"{type(value).__name__} is not a JSON value")


def _text_or_none(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


_ = MISSING
