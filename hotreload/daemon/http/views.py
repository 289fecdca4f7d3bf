"""The console's JSON documents, built from what Redis holds (pure functions, no I/O).

Every value that leaves through them went through a `SecretMatcher`: settings, the old and new
values of a diff and a canary's changes are masked by key; free text that may quote a value (a
subscriber's rejection message) is scrubbed of the secret values known.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from ...masking import MASK, SecretMatcher, scrub
from ...wire import MISSING, Canary, Change, Envelope, Head, value_change
from ...wire.presence import PresenceRecord

__all__ = [
    "EVENT_MINUTES",
    "canary_json",
    "change_json",
    "events_per_minute",
    "history_json",
    "instance_json",
    "instances_json",
    "propagation_json",
    "rollout_json",
    "settings_json",
    "summary_json",
]

#: How many minutes `events_per_minute` covers (the newest last).
EVENT_MINUTES: Final = 30

#: Instance states, laggards first (the sort order of `instances_json`).
_RANK: Final = {"other-epoch": 0, "behind": 1, "rejected": 2, "down": 3, "stale": 4,
                "ahead": 5, "ok": 6}


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def change_json(change: Change, matcher: SecretMatcher) -> dict[str, Any]:
    """One key of a diff: ``op`` (``added``, ``changed``, ``deleted``), ``key``, the masked
    ``old``/``new`` (absent when there is none), ``secret`` and a readable ``text``."""
    op = "deleted" if change.op == "delete" else "added" if change.old is MISSING else "changed"
    out: dict[str, Any] = {"op": op, "key": change.key}
    texts = {}
    for side, value in (("old", change.old), ("new", change.new)):
        if (side == "old" and value is MISSING) or (side == "new" and change.op == "delete"):
            continue
        shown = matcher.value(change.key, value)
        out[side] = shown
        texts[side] = "(secret)" if shown == MASK and value != MASK else _text(shown)
    out["secret"] = matcher.is_secret(change.key) or any(
        out.get(side) != value for side, value in (("old", change.old), ("new", change.new))
        if side in out)
    if op == "deleted":
        out["text"] = f"{change.key}: deleted (was {texts['old']})"
    elif op == "added":
        out["text"] = f"{change.key}: added {texts['new']}"
    elif texts["old"] == texts["new"] == "(secret)":
        out["text"] = f"{change.key}: changed (secret)"
    else:
        out["text"] = f"{change.key}: {texts['old']} -> {texts['new']}"
    return out


def canary_json(canary: Canary | None, matcher: SecretMatcher) -> dict[str, Any] | None:
    """A running canary: id, target, base version, its changes (masked)."""
    if canary is None:
        return None
    target = {k: v for k, v in (("service", canary.target.service),
                                ("instance", canary.target.instance),
                                ("percent", canary.target.percent)) if v is not None}
    return {"id": canary.id, "target": target, "base": canary.base,
            "changes": [change_json(value_change(ch), matcher) for ch in canary.changes]}


def settings_json(flat: Mapping[str, Any], matcher: SecretMatcher) -> list[dict[str, Any]]:
    """The settings as sorted leaves: ``key``, masked ``value``, ``secret``."""
    out = []
    for key in sorted(flat):
        value = flat[key]
        shown = matcher.value(key, value)
        out.append({"key": key, "value": shown, "secret": shown != value})
    return out


def history_json(events: Iterable[Envelope], matcher: SecretMatcher) -> list[dict[str, Any]]:
    """Config and canary events, newest first, each with its masked diff."""
    out = []
    for env in events:
        item: dict[str, Any] = {
            "version": env.version, "kind": env.kind, "epoch": env.epoch, "ts": env.ts,
            "source": env.source, "origin": env.origin, "reset": env.reset,
            "changes": [change_json(c, matcher) for c in env.value_changes()],
        }
        if env.kind == "canary":
            item["canary"] = (canary_json(env.canary, matcher) if isinstance(env.canary, Canary)
                              else None)
        out.append(item)
    out.sort(key=lambda e: -int(e["version"]))
    return out


def _state(rec: PresenceRecord, head: Head | None) -> tuple[str, int | None]:
    """(state, lag): ``other-epoch``, ``behind``, ``ahead``, ``rejected``, ``down``,
    ``stale`` or ``ok``; lag in versions behind the head (None: another epoch, or no head)."""
    if head is not None and rec.epoch is not None and rec.epoch != head.epoch:
        return "other-epoch", None
    if head is not None and rec.epoch is None and rec.version == 0:
        return "behind", head.version
    lag = None if head is None else head.version - rec.version
    if lag is not None and lag > 0:
        return "behind", lag
    if lag is not None and lag < 0:
        return "ahead", lag
    if rec.rejected is not None:
        return "rejected", lag
    if rec.link != "up":
        return rec.link, lag
    return "ok", lag


def laggard(rec: PresenceRecord, head: Head | None) -> bool:
    """Behind the head: an older version, or another epoch."""
    return _state(rec, head)[0] in ("other-epoch", "behind")


def instance_json(rec: PresenceRecord, head: Head | None, now: float,
                  secrets: Sequence[str] = ()) -> dict[str, Any]:
    state, lag = _state(rec, head)
    rejected = None
    if rec.rejected is not None:
        rejected = {"version": rec.rejected.get("version"),
                    "reason": scrub(str(rec.rejected.get("reason") or ""), secrets)}
    return {
        "instance": rec.instance, "service": rec.service, "host": rec.host, "pid": rec.pid,
        "version": rec.version, "epoch": rec.epoch, "received_version": rec.received_version,
        "lag": lag, "state": state, "behind": state in ("other-epoch", "behind"),
        "link": rec.link, "canary": rec.canary, "rejected": rejected,
        "started_at": rec.started_at, "refreshed_at": rec.refreshed_at,
        "applied_at": rec.applied_at or None,
        "age": max(0.0, now - rec.started_at) if rec.started_at else None,
        "seen": max(0.0, now - rec.refreshed_at) if rec.refreshed_at else None,
    }


def instances_json(records: Iterable[PresenceRecord], head: Head | None, now: float,
                   secrets: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every live instance, laggards first (then by lag, service, instance)."""
    rows = [instance_json(r, head, now, secrets) for r in records]
    rows.sort(key=lambda r: (_RANK[r["state"]], -(r["lag"] or 0), r["service"], r["instance"]))
    return rows


def rollout_json(records: Sequence[PresenceRecord], head: Head | None) -> dict[str, Any]:
    """Whether every live instance runs the head: ``complete`` False while one is behind."""
    behind = sum(laggard(r, head) for r in records)
    return {"version": head.version if head else 0, "instances": len(records),
            "applied": len(records) - behind, "behind": behind,
            "complete": behind == 0}


def summary_json(namespace: str, head: Head | None, last: Envelope | None,
                 records: Sequence[PresenceRecord], matcher: SecretMatcher,
                 *, fed_by: str | None, error: str | None) -> dict[str, Any]:
    """One row of ``GET /api/namespaces``."""
    return {
        "namespace": namespace, "exists": head is not None,
        "version": head.version if head else 0, "epoch": head.epoch if head else None,
        "updated_at": head.updated_at if head else None,
        "last_change": None if last is None else {
            "version": last.version, "kind": last.kind, "ts": last.ts, "source": last.source,
            "origin": last.origin},
        "instances": len(records),
        "behind": sum(laggard(r, head) for r in records),
        "rejected": sum(r.rejected is not None for r in records),
        "link_down": sum(r.link != "up" for r in records),
        "canary": canary_json(head.canary if head else None, matcher),
        "fed_by": fed_by, "error": error,
    }


def _latency_stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def propagation_json(head: Head | None, events: Sequence[Envelope],
                     applied: Mapping[int, Mapping[str, tuple[float, float]]],
                     records: Sequence[PresenceRecord], now: float) -> dict[str, Any]:
    """Per recent version (newest first): its publish time, when each instance reported having
    applied it (``applied``: instance, at, latency; ``started``: the instance started after the
    publish and loaded it, which is no propagation and counts in no latency), the live
    instances still below it (``pending``) and those that went past it before reporting it
    (``skipped``). ``applied`` maps version -> instance -> (applied at, started at)."""
    epoch = head.epoch if head else None
    live = {r.instance: r for r in records}
    versions = []
    for env in sorted(events, key=lambda e: -e.version):
        if env.epoch != epoch:
            continue
        seen = applied.get(env.version, {})
        reports = sorted((max(0.0, at - env.ts), inst, at, started > env.ts)
                         for inst, (at, started) in seen.items())
        rows = [{"instance": inst, "at": at, "latency": latency, "started": started}
                for latency, inst, at, started in reports]
        pending = sorted(i for i, r in live.items()
                         if r.epoch != epoch or r.version < env.version)
        skipped = sorted(i for i, r in live.items()
                         if i not in seen and r.epoch == epoch and r.version > env.version)
        versions.append({
            "version": env.version, "kind": env.kind, "ts": env.ts, "source": env.source,
            "applied": rows, "pending": pending, "skipped": skipped,
            "complete": not pending,
            "latency": _latency_stats([r[0] for r in reports if not r[3]]),
        })
    return {"version": head.version if head else 0, "epoch": epoch, "versions": versions,
            "events_per_minute": events_per_minute(events, now)}


def events_per_minute(events: Iterable[Envelope], now: float,
                      minutes: int = EVENT_MINUTES) -> list[dict[str, Any]]:
    """Config and canary events per wall-clock minute over the last ``minutes`` (oldest
    first, empty minutes included): ``minute`` (its start, Unix seconds) and ``count``."""
    last = math.floor(now / 60) * 60
    first = last - (minutes - 1) * 60
    counts = dict.fromkeys(range(first, last + 60, 60), 0)
    for env in events:
        minute = math.floor(env.ts / 60) * 60
        if minute in counts:
            counts[minute] += 1
    return [{"minute": m, "count": n} for m, n in counts.items()]
