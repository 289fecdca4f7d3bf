"""`Console`: what the operator console shows, kept current by one polling task.

For each namespace shown (those the daemon's sources feed, plus ``daemon.console.namespaces``)
the task reads the head's identity and the live presence records every ``poll_interval``
seconds while someone watches (an open event stream, or an API request in the last 30 s), and
every 5 s otherwise; only when the head moved does it read the settings and the recent change
log. It remembers, per recent version, when each instance reported having applied it (the
presence records' ``applied_at``), which is what the propagation chart shows; that memory
starts empty when the daemon starts. Every change of a head or of a presence record (other than
its refresh time) bumps `generation` and wakes the event streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ...config import HotReloadConfig
from ...errors import HotReloadError, describe_error
from ...masking import SecretMatcher
from ...transport import Transport
from ...wire import (
    MISSING,
    Digester,
    Envelope,
    Head,
    decode_event,
    decode_head,
    decode_head_triplet,
    parse_leaf_text,
)
from ...wire.presence import PresenceRecord, decode_presence
from . import views

__all__ = ["ACTIVE_SECONDS", "HISTORY_EVENTS", "IDLE_INTERVAL", "Console"]

log = logging.getLogger("hotreload.daemon.console")

#: Events of the change log read when a head moves (history, propagation, events per minute).
HISTORY_EVENTS: Final = 200
#: Of them, how many the namespace view shows, and how many versions the propagation covers.
HISTORY_SHOWN: Final = 20
PROPAGATION_VERSIONS: Final = 20
#: Seconds between two polls while nobody watches.
IDLE_INTERVAL: Final = 5.0
#: An API request keeps the fast polling on for this long.
ACTIVE_SECONDS: Final = 30.0
#: The deadline of one namespace's reads in a poll.
READ_TIMEOUT: Final = 5.0

Fed = Callable[[], Mapping[str, str | None]]


@dataclass(slots=True)
class _Namespace:
    """What the console holds of one namespace."""

    triplet: tuple[str | None, int, str] | None = None  # the head's identity last loaded
    head: Head | None = None
    flat: dict[str, Any] = field(default_factory=dict)
    events: list[Envelope] = field(default_factory=list)  # newest HISTORY_EVENTS, oldest first
    records: list[PresenceRecord] = field(default_factory=list)
    # version -> instance -> (when it applied it, when it started)
    applied: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    error: str | None = None
    fingerprint: Any = None


class Console:
    """The console's data: `run` polls; the views read what it holds (no Redis call)."""

    def __init__(self, config: HotReloadConfig, transport: Transport, *,
                 fed: Fed = dict) -> None:
        settings = config.daemon.console
        self.transport = transport
        self.token = settings.token
        self.interval = settings.poll_interval
        self.extra = tuple(settings.namespaces)
        self.matcher = SecretMatcher(settings.secret_keys)
        self._fed = fed
        self._key = config.security.key_bytes()
        self._digester = Digester(self._key)
        self._max_bytes = config.security.max_message_bytes
        self._spaces: dict[str, _Namespace] = {}
        self._changed_at: dict[str, int] = {}  # namespace -> generation of its last change
        self.generation = 0
        self._changed = asyncio.Event()
        self._ticked = asyncio.Event()
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._last_tick = -1.0
        self._active_until = 0.0
        self._watchers = 0

    # ------------------------------------------------------------------ what is shown

    def namespaces(self) -> dict[str, str | None]:
        """The namespaces shown, sorted, with the source feeding each (None: configured)."""
        shown: dict[str, str | None] = dict.fromkeys(self.extra)
        shown.update(self._fed())
        return dict(sorted(shown.items()))

    def shows(self, namespace: str) -> bool:
        return namespace in self.namespaces()

    # ------------------------------------------------------------------ documents

    def overview(self) -> dict[str, Any]:
        now = time.time()
        rows = []
        for ns, fed_by in self.namespaces().items():
            st = self._spaces.get(ns) or _Namespace()
            last = st.events[-1] if st.events else None
            rows.append(views.summary_json(ns, st.head, last, st.records, self.matcher,
                                           fed_by=fed_by, error=st.error))
        return {"now": now, "generation": self.generation, "namespaces": rows}

    def namespace(self, ns: str) -> dict[str, Any]:
        now = time.time()
        st = self._spaces.get(ns) or _Namespace()
        head = st.head
        return {
            "now": now, "generation": self.generation, "namespace": ns,
            "exists": head is not None, "version": head.version if head else 0,
            "epoch": head.epoch if head else None, "count": head.count if head else 0,
            "updated_at": head.updated_at if head else None,
            "canary": views.canary_json(head.canary if head else None, self.matcher),
            "error": st.error,
            "rollout": views.rollout_json(st.records, head),
            "settings": views.settings_json(st.flat, self.matcher),
            "history": views.history_json(st.events[-HISTORY_SHOWN:], self.matcher),
            "instances": views.instances_json(st.records, head, now, st.secrets),
        }

    def propagation(self, ns: str) -> dict[str, Any]:
        now = time.time()
        st = self._spaces.get(ns) or _Namespace()
        recent = st.events[-PROPAGATION_VERSIONS:]
        doc = views.propagation_json(st.head, recent, st.applied, st.records, now)
        doc["events_per_minute"] = views.events_per_minute(st.events, now)
        return {"now": now, "generation": self.generation, "namespace": ns, **doc}

    # ------------------------------------------------------------------ watching

    def touch(self) -> None:
        """An API request: poll at full speed for a while."""
        self._active_until = time.monotonic() + ACTIVE_SECONDS

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Held by each open event stream: poll at full speed meanwhile."""
        self._watchers += 1
        self._wake.set()
        try:
            yield
        finally:
            self._watchers -= 1

    async def fresh(self, within: float = 2.0) -> None:
        """Return once what is held was read less than ``poll_interval`` ago (waiting at most
        ``within`` seconds for a poll; what is held is served anyway after that)."""
        self.touch()
        if time.monotonic() - self._last_tick <= self.interval:
            return
        ticked = self._ticked
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await ticked.wait()

    async def wait_change(self, generation: int, timeout: float) -> list[str] | None:
        """The namespaces changed since ``generation`` (waiting up to ``timeout`` seconds for
        one); None after the timeout or when the console closes."""
        if self.generation == generation and not self._closed.is_set():
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await changed.wait()
        if self.generation == generation:
            return None
        return sorted(ns for ns, gen in self._changed_at.items() if gen > generation)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """End the event streams (the server is stopping)."""
        self._closed.set()
        self._changed.set()

    # ------------------------------------------------------------------ polling

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            try:
                await self.poll()
            except Exception as exc:  # a bug here must not end the console quietly
                log.warning("console: a poll failed: %s", describe_error(exc), exc_info=exc)
            active = self._watchers > 0 or time.monotonic() < self._active_until
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval if active else IDLE_INTERVAL):
                    await self._wake.wait()
            self._wake.clear()

    async def poll(self) -> None:
        """Read every namespace shown once; wake the event streams if anything changed."""
        shown = list(self.namespaces())
        for ns in [ns for ns in self._spaces if ns not in shown]:
            del self._spaces[ns]
        results = await asyncio.gather(*(self._poll_one(ns) for ns in shown))
        changed = [ns for ns, moved in zip(shown, results, strict=True) if moved]
        if changed:
            self.generation += 1
            for ns in changed:
                self._changed_at[ns] = self.generation
            for ns in [ns for ns in self._changed_at if ns not in shown]:
                del self._changed_at[ns]
            self._changed.set()
            self._changed = asyncio.Event()
        self._last_tick = time.monotonic()
        self._ticked.set()
        self._ticked = asyncio.Event()

    async def _poll_one(self, ns: str) -> bool:
        """Read one namespace; True if what is shown of it changed."""
        st = self._spaces.setdefault(ns, _Namespace())
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                raw_head, raw_records = await asyncio.gather(
                    self.transport.head(ns), self.transport.read_presence(ns))
                triplet = decode_head_triplet(raw_head.meta_epoch, raw_head.meta_version,
                                              raw_head.meta_checksum)
                if triplet != st.triplet:
                    await self._load(ns, st)
            st.error = None
        except (HotReloadError, TimeoutError, ValueError) as exc:
            st.error = describe_error(exc) if not isinstance(exc, TimeoutError) else (
                f"reading {ns!r} took more than {READ_TIMEOUT:g} s")
            log.debug("console: reading %s failed: %s", ns, st.error)
            raw_records = None
        if raw_records is not None:
            st.records = [r for r in map(decode_presence, raw_records) if r is not None]
            self._observe(st)
        fingerprint = (st.triplet, st.error, sorted(
            (r.instance, r.version, r.epoch, r.link, r.canary, r.applied_at, r.service,
             json.dumps(r.rejected, sort_keys=True, default=str)) for r in st.records))
        moved: bool = fingerprint != st.fingerprint
        st.fingerprint = fingerprint
        return moved

    async def _load(self, ns: str, st: _Namespace) -> None:
        """Read the settings and the recent change log (the head moved)."""
        raw = await self.transport.load_leaves(ns)
        head = decode_head(ns, raw.meta, key=self._key, max_bytes=self._max_bytes)
        texts = {_text(k): _text(v) for k, v in raw.leaves.items()}
        if head is not None and (len(texts) != head.count
                                 or self._digester.checksum_of(texts) != head.checksum):
            raise HotReloadError(f"the leaves of {ns!r} do not match its head")
        flat = {k: parse_leaf_text(t) for k, t in texts.items()}
        events: list[Envelope] = []
        if head is not None:
            for data in reversed(await self.transport.read_log(
                    ns, 1, count=HISTORY_EVENTS, newest_first=True)):
                try:
                    events.append(decode_event(data, key=self._key, max_bytes=self._max_bytes,
                                               namespace=ns))
                except HotReloadError as exc:
                    log.debug("console: skipped an event of %s: %s", ns, describe_error(exc))
        if st.head is None or head is None or head.epoch != st.head.epoch:
            st.applied.clear()
        st.head, st.flat, st.events = head, flat, events
        st.triplet = (None, 0, "0" * 64) if head is None else (
            head.epoch, head.version, head.checksum)
        secrets = self.matcher.secret_texts(flat)
        for env in events:
            for ch in env.value_changes():
                secrets += self.matcher.secret_texts({ch.key: ch.new})
                if ch.old is not MISSING:
                    secrets += self.matcher.secret_texts({ch.key: ch.old})
        st.secrets = sorted(set(secrets))

    def _observe(self, st: _Namespace) -> None:
        """Remember when each instance reported having applied its version (this epoch)."""
        head = st.head
        if head is None:
            return
        for rec in st.records:
            if rec.epoch == head.epoch and rec.applied_at > 0 and rec.version > 0:
                st.applied.setdefault(rec.version, {}).setdefault(
                    rec.instance, (rec.applied_at, rec.started_at))
        oldest = head.version - HISTORY_EVENTS
        for version in [v for v in st.applied if v <= oldest]:
            del st.applied[version]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
