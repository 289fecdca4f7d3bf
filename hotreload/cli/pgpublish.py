"""``hotreload publish --via postgres``: write the settings table; the daemon publishes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import click

from ..config import HotReloadConfig
from ..errors import ConfigError, HotReloadError
from ..publisher import AsyncPublisher
from ..wire import MISSING, Change, same_value
from ._extras import require_extra

#: How often ``--wait`` reads the namespace's state.
POLL_SECONDS = 0.1


def publish_via_postgres(config: HotReloadConfig, namespace: str | None,
                         sets: Mapping[str, Any], deletes: Sequence[str],
                         document: dict[str, Any] | None, merged: dict[str, Any] | None, *,
                         wait: bool, timeout: float) -> None:
    """Write the change (or the whole ``document``) to the settings table, report it, and with
    ``wait`` wait until the namespace's state on Redis shows it."""
    require_extra("daemon", "hotreload publish --via postgres", ["psycopg"])
    if config.postgres is None:
        raise ConfigError("--via postgres needs a postgres section in the config")
    from ..daemon.pgwrite import write_settings

    ns = namespace or config.namespace
    if document is not None:
        result = asyncio.run(write_settings(config, ns, document=document))
    else:
        result = asyncio.run(write_settings(config, ns, {**(merged or {}), **sets}, deletes))
    for line in result.skipped:
        click.echo(f"warning: a bad row of the settings table, left alone: {line}", err=True)
    if not result.changed:
        click.echo("no change (the settings table already holds these values)")
        return
    n = len(result.changes)
    click.echo(f"written to PostgreSQL (the daemon publishes it): {n} change"
               f"{'' if n == 1 else 's'} in {ns}")
    if wait:
        version = asyncio.run(_wait(config, ns, result.changes, timeout))
        click.echo(f"published v{version}")


async def _wait(config: HotReloadConfig, ns: str, changes: Sequence[Change],
                timeout: float) -> int:
    """Read the namespace until it holds every change; its version (an error past timeout)."""
    deadline = time.monotonic() + timeout
    async with AsyncPublisher(config, namespace=ns, source="cli") as pub:
        while True:
            snap = await pub.snapshot()
            if _shows(snap.flat, changes):
                return snap.version
            if time.monotonic() > deadline:
                raise HotReloadError(
                    f"written to PostgreSQL, but {ns!r} did not show it within {timeout:g}s "
                    "(is a daemon with the postgres source running?)")
            await asyncio.sleep(POLL_SECONDS)


def _shows(flat: Mapping[str, Any], changes: Sequence[Change]) -> bool:
    for change in changes:
        held = flat.get(change.key, MISSING)
        if change.op == "set":
            if held is MISSING or not same_value(held, change.new):
                return False
        elif held is not MISSING:
            return False
    return True
