"""status (who runs which version), diff, promote, abort."""

from __future__ import annotations

import time
from typing import Any

import click

from ..publisher import AsyncPublisher
from ..publisher.rollout import lag
from ..publisher.targets import describe_target
from ..wire.presence import PresenceRecord
from ._base import State, handle_errors, namespace_option
from .core import _echo_json, _run, _ts, describe_change, describe_result, never_published


def _instance_json(rec: PresenceRecord, version: int, epoch: str | None,
                   now: float) -> dict[str, Any]:
    behind = lag(rec, version, epoch)
    return {
        "instance": rec.instance, "service": rec.service, "host": rec.host, "pid": rec.pid,
        "version": rec.version, "epoch": rec.epoch, "lag": behind, "link": rec.link,
        "canary": rec.canary, "rejected": rec.rejected,
        "age": round(now - rec.started_at, 1) if rec.started_at else None,
        "refreshed": round(now - rec.refreshed_at, 1) if rec.refreshed_at else None,
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _instance_rows(instances: list[dict[str, Any]]) -> list[str]:
    """The table of live instances, laggards first."""
    if not instances:
        return ["instances:   none reporting"]
    ordered = sorted(instances, key=lambda i: (-(i["lag"] if i["lag"] is not None else 10**9),
                                               i["link"] == "up", i["instance"]))
    header = f"  {'INSTANCE':<34} {'SERVICE':<12} {'VERSION':>7} {'LAG':>5} {'LINK':<5} " \
             f"{'AGE':>5}  LAST REJECTION"
    rows = [f"instances:   {len(instances)} live", header]
    for i in ordered:
        lag_text = "epoch" if i["lag"] is None else str(i["lag"])
        rejected = i["rejected"] or {}
        why = (f"v{rejected.get('version')}: {rejected.get('reason')}" if rejected else "-")
        canary = f" (canary {i['canary']})" if i["canary"] else ""
        rows.append(f"  {i['instance'][:34]:<34} {(i['service'] or '-')[:12]:<12} "
                    f"{i['version']:>7} {lag_text:>5} {i['link']:<5} {_age(i['age']):>5}  "
                    f"{why[:60]}{canary}")
    return rows


@click.command()
@namespace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--service", metavar="GLOB", default=None,
              help="Only the instances of this service.")
@click.pass_obj
@handle_errors
def status(state: State, namespace: str | None, as_json: bool, service: str | None) -> None:
    """Version, checksum, canary, every live instance (version, lag, link) and the daemons."""
    config = state.config
    from ..daemon.status import describe_daemon, read_daemon_status

    async def body(pub: AsyncPublisher) -> dict[str, Any]:
        snap = await pub.snapshot()
        canary = snap.canary
        now = time.time()
        instances = [_instance_json(r, snap.version, snap.epoch or None, now)
                     for r in await pub.instances(service=service)]
        return {
            "namespace": snap.namespace,
            "published": snap.version > 0,
            "version": snap.version,
            "epoch": snap.epoch or None,
            "checksum": snap.checksum,
            "updated_at": _ts(snap.updated_at) if snap.updated_at else None,
            "keys": snap.count,
            "canary": None if canary is None else {
                "id": canary.id, "target": describe_target(canary.target),
                "base": canary.base, "changes": len(canary.changes)},
            "subscribers": await pub.subscribers(),
            "instances": instances,
            "behind": sum(1 for i in instances if i["lag"] != 0),
            "redis": config.redis.display_url(),
            "daemons": await read_daemon_status(config, transport=pub.transport),
        }

    info = _run(state, namespace, body)
    if as_json:
        _echo_json(info)
        return
    shown = dict(info)
    if not info["published"]:
        shown["version"] = "- (never published)"
    if info["canary"]:
        c = info["canary"]
        shown["canary"] = f"{c['id']} on {c['target']} since v{c['base']} ({c['changes']} keys)"
    for key in ("namespace", "version", "epoch", "checksum", "updated_at", "keys", "canary",
                "subscribers", "redis"):
        click.echo(f"{key + ':':<13}{shown[key] if shown[key] is not None else '-'}")
    for line in _instance_rows(info["instances"]):
        click.echo(line)
    if not info["daemons"]:
        click.echo("daemons:     none running")
    for d in info["daemons"]:
        for line in describe_daemon(d):
            click.echo(line)


@click.command()
@namespace_option
@click.argument("from_version", type=click.IntRange(0), metavar="V1")
@click.argument("to_version", type=click.IntRange(0), metavar="[V2]", required=False)
@click.pass_obj
@handle_errors
def diff(state: State, namespace: str | None, from_version: int,
         to_version: int | None) -> None:
    """Show what changed from version V1 to V2 (default: the current version)."""

    async def body(pub: AsyncPublisher) -> Any:
        if not await pub.version():
            raise never_published(pub.namespace)
        return await pub.diff(from_version, to_version)

    changes = _run(state, namespace, body)
    if not changes:
        click.echo("no change")
    for change in changes:
        click.echo(describe_change(change))


@click.command()
@namespace_option
@click.pass_obj
@handle_errors
def promote(state: State, namespace: str | None) -> None:
    """Publish the running canary's change to every instance (and end the canary)."""
    click.echo(describe_result(_run(state, namespace, lambda pub: pub.promote()),
                               "canary promoted, "))


@click.command()
@namespace_option
@click.pass_obj
@handle_errors
def abort(state: State, namespace: str | None) -> None:
    """End the running canary: its instances return to the namespace's settings."""
    result = _run(state, namespace, lambda pub: pub.abort())
    click.echo(f"canary aborted (v{result.version})")


COMMANDS: list[click.Command] = [status, diff, promote, abort]
