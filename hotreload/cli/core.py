"""publish, invalidate, get, history, rollback, tail, status."""

from __future__ import annotations

import asyncio
import json
import math
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import HotReloadConfig
from ..errors import DocumentError, HotReloadError, RolloutIncomplete
from ..publisher import AsyncPublisher, PublishResult, RollbackPlan, Rollout
from ..publisher.state import NamespaceState, plan_update
from ..subscriber import AsyncSubscriber, Invalidation, Resync, SettingsChange
from ..wire import (
    MISSING,
    Canary,
    Change,
    Envelope,
    encode_event,
    flatten,
    flatten_texts,
    loads,
    unflatten,
)
from ._base import State, confirm, handle_errors, namespace_option

T = TypeVar("T")


def _run(state: State, namespace: str | None,
         body: Callable[[AsyncPublisher], Awaitable[T]]) -> T:
    """Run ``body`` with a publisher for the config (and namespace) of this invocation."""

    async def go() -> T:
        async with AsyncPublisher(state.config, namespace=namespace, source="cli") as pub:
            return await body(pub)

    return asyncio.run(go())


_JSON_START = ("{", "[", '"')
_JSON_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")


def parse_value(key: str, text: str) -> Any:
    """A ``KEY=VALUE`` value, by the rules in `publish`'s help (a bad one is a usage error)."""
    stripped = text.strip()
    if not stripped.startswith(_JSON_START) and not _JSON_SCALAR.fullmatch(stripped):
        return text
    try:
        value = loads(stripped, what="the value")
    except (ValueError, HotReloadError) as exc:
        what = "is not valid JSON" if stripped.startswith(_JSON_START) else "is no JSON number"
        why = str(exc).removeprefix("the value is not valid JSON: ")  # said once, below
        raise click.BadParameter(f"the value of {key!r} {what}: {why} (for a string as "
                                 "written, pass --string)", param_hint="KEY=VALUE") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise click.BadParameter(f"the value of {key!r} is too large for a JSON number",
                                 param_hint="KEY=VALUE")
    return value


def parse_assignments(items: Sequence[str], deletes: Sequence[str] = (), *,
                      literal: bool = False) -> dict[str, Any]:
    """``KEY=VALUE`` arguments as a mapping; no key may be given twice or overlap another
    (``x`` and ``x.y``), nor be set and deleted."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        for other in out:
            if _overlap(key, other):
                raise click.BadParameter(
                    f"{key!r} is given twice" if key == other else
                    f"{other!r} and {key!r} overlap: set the outer key to an object instead",
                    param_hint="KEY=VALUE")
        for gone in deletes:
            if _overlap(key, gone):
                raise click.BadParameter(f"{key!r} is set, and --delete {gone!r} deletes it",
                                         param_hint="KEY=VALUE")
        out[key] = value if literal else parse_value(key, value)
    return out


def _overlap(a: str, b: str) -> bool:
    """The same key, or one inside the other (``x`` and ``x.y``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def read_document(path: str) -> dict[str, Any]:
    """A settings document (YAML, JSON or TOML by extension), checked like the daemon does."""
    from ..documents import load_document

    return load_document(Path(path)).data


def _ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _value(value: Any) -> str:
    return "(absent)" if value is MISSING else json.dumps(value, ensure_ascii=False)


def describe_change(change: Change) -> str:
    """One key of a diff: ``key: old -> new``, ``key: added new``, ``key: deleted (was old)``."""
    if change.op != "set":
        return f"{change.key}: deleted (was {_value(change.old)})"
    if change.old is MISSING:
        return f"{change.key}: added {_value(change.new)}"
    return f"{change.key}: {_value(change.old)} -> {_value(change.new)}"


def describe_result(result: PublishResult, what: str = "") -> str:
    """``published v8 (2 changes)``, or ``no change (v7)`` for a publish that changed nothing."""
    if not result.changed:
        return f"no change (v{result.version})"
    n = len(result.changes)
    return f"published v{result.version} ({what}{n} change{'' if n == 1 else 's'})"


def report_rollout(rollout: Rollout) -> None:
    """Print who applied a version; exit 1 listing the instances that did not."""
    lines = rollout.describe()
    click.echo(lines[0])
    if not rollout.complete:
        for line in lines[1:]:
            click.echo(line, err=True)
        raise RolloutIncomplete(f"{len(rollout.pending)} instance(s) did not apply "
                                f"v{rollout.version} in time", rollout=rollout)


def never_published(namespace: str) -> HotReloadError:
    return HotReloadError(f"namespace {namespace!r} has never been published (or Redis lost "
                          "it): check -n or the config's namespace")


def describe_envelope(env: Envelope) -> str:
    """One line of ``history``: version, time, kind, who, and what changed."""
    if env.kind == "invalidate":
        return describe_line(f"seq {env.seq}", env.ts, "invalidate", env.source, env.origin,
                             _invalidation_parts(env.keys, env.prefixes, env.all))
    parts = [describe_change(c) for c in env.value_changes()]
    if env.reset:
        parts.append("(a new history: the whole state)")
    if env.kind == "canary":
        parts.append(f"canary {env.canary.id}" if isinstance(env.canary, Canary)
                     else "canary aborted")
    return describe_line(f"v{env.version}", env.ts, env.kind, env.source, env.origin, parts)


def describe_line(label: str, ts: float, kind: str, source: str, origin: str,
                  parts: Sequence[str]) -> str:
    when = f" {_ts(ts)}" if ts else ""
    return f"{label}{when} {kind} source={source} origin={origin}  " + ", ".join(parts)


def _invalidation_parts(keys: Sequence[str], prefixes: Sequence[str],
                        everything: bool) -> list[str]:
    return (["everything"] if everything else []) + list(keys) + [f"{x}*" for x in prefixes]


def change_json(change: Change) -> dict[str, Any]:
    """A change as JSON (``tail --json``): ``old`` absent when the key did not exist."""
    out: dict[str, Any] = {"op": change.op, "key": change.key}
    if change.old is not MISSING:
        out["old"] = change.old
    if change.op == "set":
        out["new"] = change.new
    return out


def overlay(document: dict[str, Any], sets: dict[str, Any],
            deletes: Sequence[str]) -> dict[str, Any]:
    """``document`` with ``KEY=VALUE`` assignments and ``--delete`` keys applied on top."""
    state = NamespaceState.from_texts(flatten_texts(document), flatten(document))
    changes, parsed = plan_update(state, sets, deletes)
    state.apply(changes, parsed)
    return unflatten(state.values)


def _json_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


def _echo_json(obj: Any) -> None:
    click.echo(_json_line(obj))


@click.command()
@namespace_option
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option("--delete", "deletes", multiple=True, metavar="KEY", help="Delete a key (repeat).")
@click.option("--file", "file_", type=click.Path(dir_okay=False), default=None,
              help="Make the namespace exactly this YAML/JSON/TOML document (publish its diff).")
@click.option("--merge", is_flag=True, help="With --file: only set the document's keys.")
@click.option("-s", "--string", "literal", is_flag=True,
              help="Every VALUE is a string, exactly as written.")
@click.option("--dry-run", is_flag=True, help="Show what would change; publish nothing.")
@click.option("--canary", "canary_target", metavar="TARGET", default=None,
              help="Apply only to these instances: 'service=api,instance=api-7*' and/or '10%%'"
                   " (then: hotreload promote / hotreload abort).")
@click.option("--via", type=click.Choice(["redis", "postgres"]), default=None,
              help="redis: publish now; postgres: write the PostgreSQL settings table (the "
                   "daemon publishes it) [default: the config's publish_via, else redis].")
@click.option("--wait", is_flag=True,
              help="Wait until every live subscriber applied it and list those that did not "
                   "(with --via postgres: until the namespace shows the written values).")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, help="How long --wait waits (seconds).")
@click.option("--service", metavar="GLOB", default=None,
              help="With --wait: only the subscribers of this service.")
@click.pass_obj
@handle_errors
def publish(state: State, namespace: str | None, assignments: tuple[str, ...],
            deletes: tuple[str, ...], file_: str | None, merge: bool, literal: bool,
            dry_run: bool, canary_target: str | None, via: str | None, wait: bool,
            timeout: float, service: str | None) -> None:
    """Publish settings changes as one event.

    \b
    VALUE is JSON when it starts with { [ or " (it must then be valid JSON)
    or is a number, true, false or null; anything else is a string:
      a=20  a=1.5  a=true  a=null  a='[1, 2]'  a='{"x": 1}'   JSON
      a=hello  a='hello world'  a=v1.2  a='"20"'  -s a=20      strings
    Give each key once: x=1 x.y=2 (set x='{"y": 2}') or x=1 --delete x is
    an error. With --file, KEY=VALUE and --delete apply on top of the file.
    With --via postgres (or publish_via: postgres in the config) the change
    is written to the PostgreSQL settings table, the source of truth, and
    the daemon publishes it.
    """
    sets = parse_assignments(assignments, deletes, literal=literal)
    document = read_document(file_) if file_ else None
    if document is None and not sets and not deletes:
        raise click.UsageError("nothing to publish: give KEY=VALUE, --delete or --file")
    whole = document is not None and not merge
    if canary_target is not None and whole:
        raise click.UsageError("--canary takes KEY=VALUE, --delete or --file --merge (a canary "
                               "changes some keys, not the whole document)")
    if (wait or service is not None) and dry_run:
        raise click.UsageError("--dry-run publishes nothing to wait for")
    merged = {**flatten(document or {}), **sets}
    route = via or state.config.publish_via
    if route == "postgres":
        if canary_target is not None or dry_run or service is not None:
            raise click.UsageError("--via postgres writes the settings table: --canary, "
                                   "--dry-run and --service are for a Redis publish")
        from .pgpublish import publish_via_postgres

        publish_via_postgres(state.config, namespace, sets, deletes,
                             None if document is None or merge else overlay(document, sets,
                                                                           deletes),
                             flatten(document) if document is not None and merge else None,
                             wait=wait, timeout=timeout)
        return

    if dry_run:
        planned = _run(state, namespace, lambda pub: pub.plan(
            None if whole else merged, () if whole else deletes,
            document=overlay(document, sets, deletes) if whole and document is not None
            else None))
        if not planned:
            click.echo("no change")
        for change in planned:
            click.echo(describe_change(change))
        return

    async def body(pub: AsyncPublisher) -> tuple[PublishResult, Rollout | None]:
        if canary_target is not None:
            result = await pub.canary(merged, deletes, target=canary_target, ack=wait)
        elif whole and document is not None:
            result = await pub.replace(overlay(document, sets, deletes), ack=wait)
        else:
            result = await pub.publish(merged, deletes, ack=wait)
        rollout = None
        if wait:
            rollout = await pub.wait_applied(result.version, epoch=result.epoch,
                                             timeout=timeout, service=service)
        return result, rollout

    result, rollout = _run(state, namespace, body)
    what = f"canary {canary_target}, " if canary_target is not None else ""
    click.echo(describe_result(result, what))
    if rollout is not None:
        report_rollout(rollout)


@click.command()
@namespace_option
@click.argument("keys", nargs=-1)
@click.option("--prefix", "prefixes", multiple=True, help="Invalidate every key with this prefix.")
@click.option("--all", "everything", is_flag=True, help="Invalidate every cached entry.")
@click.pass_obj
@handle_errors
def invalidate(state: State, namespace: str | None, keys: tuple[str, ...],
               prefixes: tuple[str, ...], everything: bool) -> None:
    """Tell every subscriber's cache to drop KEYs (and/or prefixes)."""
    if not (keys or prefixes or everything):
        raise click.UsageError("give KEYs, --prefix or --all")
    result = _run(state, namespace, lambda pub: pub.invalidate(keys, prefixes,
                                                              everything=everything))
    # invalidations are numbered apart from settings versions (docs/protocol.md §9)
    click.echo(f"published seq {result.version} (invalidate)")


@click.command()
@namespace_option
@click.argument("key", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@handle_errors
def get(state: State, namespace: str | None, key: str | None, as_json: bool) -> None:
    """Print the published settings, or one KEY (dotted) of them."""
    snap = _run(state, namespace, lambda pub: pub.snapshot())
    if not snap.version:
        raise never_published(snap.namespace)
    value: Any = snap.settings
    if key:
        flat = snap.flat
        if key in flat:
            value = flat[key]
        else:
            sub = {k[len(key) + 1:]: v for k, v in flat.items() if k.startswith(key + ".")}
            if not sub:
                raise DocumentError(f"key {key!r} not found in {snap.namespace!r} "
                                    f"(v{snap.version})")
            value = unflatten(sub)
    if as_json:
        _echo_json({"namespace": snap.namespace, "version": snap.version, "key": key,
                    "value": value} if key else
                   {"namespace": snap.namespace, "version": snap.version,
                    "checksum": snap.checksum, "settings": value})
    elif isinstance(value, dict):
        import yaml

        click.echo(yaml.safe_dump(value, sort_keys=True, allow_unicode=True).rstrip()
                   if value else "{}")
    else:
        click.echo(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


@click.command()
@namespace_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON envelope per line.")
@click.pass_obj
@handle_errors
def history(state: State, namespace: str | None, limit: int, as_json: bool) -> None:
    """Print the newest events of the log, oldest first."""
    events = _run(state, namespace, lambda pub: pub.history(limit=limit))
    for env in events:
        click.echo(encode_event(env).decode() if as_json else describe_envelope(env))
    if not events and not as_json:
        click.echo("no events")


@click.command()
@namespace_option
@click.argument("version", type=click.IntRange(0))
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@handle_errors
def rollback(state: State, namespace: str | None, version: int, yes: bool) -> None:
    """Publish the settings as they were at VERSION (as a new version; 0 deletes them all).

    Shows what would change and asks before publishing, unless --yes.
    """

    async def plan(pub: AsyncPublisher) -> RollbackPlan:
        if not await pub.version():
            raise never_published(pub.namespace)
        return await pub.plan_rollback(version)

    todo = _run(state, namespace, plan)
    if not todo.changes:
        click.echo(f"no change: the settings of v{todo.from_version} are already those "
                   f"of v{version}")
        return
    click.echo(f"rollback of {todo.namespace} from v{todo.from_version} to the settings of "
               f"v{version}:")
    for change in todo.changes:
        click.echo(f"  {describe_change(change)}")
    if not yes:
        confirm(f"Publish this as v{todo.from_version + 1}?", "nothing rolled back")
    result = _run(state, namespace, lambda pub: pub.rollback(
        version, expected_version=todo.from_version))
    click.echo(describe_result(result, f"rollback to v{version}, "))


@click.command()
@namespace_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--max-events", type=click.IntRange(1), default=None,
              help="Exit after this many applied events.")
@click.pass_obj
@handle_errors
def tail(state: State, namespace: str | None, as_json: bool, max_events: int | None) -> None:
    """Follow a namespace through a real subscriber: one line per applied event."""
    asyncio.run(_tail(state.config, namespace, as_json, max_events))


async def _tail(config: HotReloadConfig, namespace: str | None, as_json: bool,
                max_events: int | None) -> None:
    sub: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=namespace)
    done = asyncio.Event()
    seen = 0
    gone: list[BrokenPipeError] = []

    def out(line: str) -> None:
        """Print, or stop when the reader went away (``hotreload tail | head``)."""
        if done.is_set():
            return
        try:
            click.echo(line)
            sys.stdout.flush()
        except BrokenPipeError as exc:  # in a listener: stop, and let handle_errors see it
            gone.append(exc)
            done.set()

    def count() -> None:
        nonlocal seen
        seen += 1
        if max_events is not None and seen >= max_events:
            done.set()

    @sub.on_change
    def _change(ch: SettingsChange) -> None:
        if as_json:
            out(_json_line({
                "type": "change", "namespace": ch.namespace, "version": ch.version,
                "resync": ch.resync, "source": ch.source, "origin": ch.origin,
                "changes": [change_json(c) for c in ch.changes]}))
        else:
            line = describe_line(f"v{ch.version}", ch.ts, "config", ch.source, ch.origin,
                                 [describe_change(c) for c in ch.changes])
            out(line + ("  (resync)" if ch.resync else ""))
        count()

    @sub.on_invalidate
    def _invalidate(inv: Invalidation) -> None:
        if as_json:
            out(_json_line({
                "type": "invalidate", "namespace": inv.namespace, "version": inv.version,
                "keys": list(inv.keys), "prefixes": list(inv.prefixes), "all": inv.all,
                "reason": inv.reason, "origin": inv.origin}))
        else:
            out(describe_line(f"seq {inv.version}", 0.0, "invalidate", inv.source, inv.origin,
                              _invalidation_parts(inv.keys, inv.prefixes, inv.all)))
        count()

    @sub.on_resync
    def _resync(ev: Resync) -> None:
        how = "replayed from the log" if ev.replayed else "reloaded the snapshot"
        if as_json:
            out(_json_line({
                "type": "resync", "namespace": ev.namespace, "version": ev.to_version,
                "from_version": ev.from_version, "reason": ev.reason, "replayed": ev.replayed}))
        else:
            out(f"# resync v{ev.from_version} -> v{ev.to_version} ({ev.reason}; {how})")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    async with sub:
        if as_json:
            out(_json_line({"type": "ready", "namespace": sub.namespace,
                            "version": sub.version}))
        else:
            out(f"# following {sub.namespace} from v{sub.version} (Ctrl-C to stop)")
        await done.wait()
    if gone:
        raise gone[0]


COMMANDS: list[click.Command] = [publish, invalidate, get, history, rollback, tail]
