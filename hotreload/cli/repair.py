"""``hotreload repair``: rebuild a damaged namespace into a new epoch, loudly."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..config import HotReloadConfig
from ..errors import ConfigError, HotReloadError
from ..publisher import AsyncPublisher, PublishResult, Salvage
from ..wire import diff_values, flatten
from ._base import State, confirm, handle_errors, namespace_option
from ._extras import require_extra
from .core import describe_change, read_document


@click.command("repair")
@namespace_option
@click.option("--file", "file_", type=click.Path(dir_okay=False), default=None,
              help="Rebuild from this YAML/JSON/TOML document.")
@click.option("--from-postgres", is_flag=True,
              help="Rebuild from the PostgreSQL settings table (the config's postgres section).")
@click.option("--keep-readable", is_flag=True,
              help="Rebuild from the leaves still readable on the server (the others are "
                   "dropped and listed).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@handle_errors
def repair(state: State, namespace: str | None, file_: str | None, from_postgres: bool,
           keep_readable: bool, yes: bool) -> None:
    """Rebuild a namespace as version 1 of a new epoch: every subscriber reloads it.

    \b
    For a namespace that is corrupt (a garbage head, a version out of range,
    a key of the wrong type), lost, or rolled back on the server. Give the
    settings with exactly one of --file, --from-postgres, --keep-readable.
    Shows what the server holds and what will be published, and asks
    unless --yes.
    """
    routes = [r for r, on in (("--file", file_ is not None), ("--from-postgres", from_postgres),
                              ("--keep-readable", keep_readable)) if on]
    if len(routes) != 1:
        raise click.UsageError("give exactly one of --file, --from-postgres, --keep-readable"
                               + (f" (not {' and '.join(routes)})" if routes else ""))
    config = state.config
    skipped: list[str] = []
    if file_ is not None:
        given: dict[str, Any] | None = read_document(file_)
        origin = file_
    elif from_postgres:
        given, skipped = _from_postgres(config, namespace or config.namespace)
        origin = "the PostgreSQL settings table"
    else:
        given, origin = None, ""

    async def survey(pub: AsyncPublisher) -> Salvage:
        return await pub.salvage()

    found = _run(config, namespace, survey)
    ns = found.namespace
    if given is not None:
        document = given
    elif found.taken_from == "nothing":
        raise HotReloadError(f"nothing readable in {ns!r}: repair it with --file or "
                             "--from-postgres")
    else:
        document = found.document
        origin = ("the readable leaves" if found.taken_from == "leaves"
                  else "the checkpoint (the leaves are unreadable)")
    click.echo(f"repair of {ns} on {config.redis.display_url()}:")
    for line in found.found:
        click.echo(f"  {line}")
    if found.healthy:
        click.echo("  (the namespace is healthy: a repair still starts a new epoch)")
    for key, why in found.dropped:
        click.echo(f"  unreadable, dropped: {key}: {why}")
    for line in skipped:
        click.echo(f"  bad row, skipped: {line}")
    keys = len(flatten(document))
    click.echo(f"will publish {ns} as v1 of a new epoch with {keys} key{'' if keys == 1 else 's'} "
               f"from {origin}; every subscriber reloads it")
    if found.taken_from != "nothing" and not keep_readable:
        changes = diff_values(flatten(found.document), flatten(document))
        click.echo(f"  against what is readable now: {len(changes)} change"
                   f"{'' if len(changes) == 1 else 's'}")
        for change in changes:
            click.echo(f"    {describe_change(change)}")
    if not yes:
        confirm(f"Rebuild {ns} now?", "nothing repaired")
    result = _run(config, namespace, lambda pub: pub.rebuild(document, source="repair"))
    click.echo(_describe(result))


def _describe(result: PublishResult) -> str:
    return f"repaired {result.namespace}: v{result.version} of epoch {result.epoch}"


def _run(config: HotReloadConfig, namespace: str | None, body: Any) -> Any:
    async def go() -> Any:
        async with AsyncPublisher(config, namespace=namespace, source="repair") as pub:
            return await body(pub)

    return asyncio.run(go())


def _from_postgres(config: HotReloadConfig, namespace: str) -> tuple[dict[str, Any], list[str]]:
    """The namespace's document in the settings table, and the bad rows skipped."""
    require_extra("daemon", "hotreload repair --from-postgres", ["psycopg"])
    if config.postgres is None:
        raise ConfigError("--from-postgres needs a postgres section in the config")
    from ..daemon.pgwrite import read_document as read_table

    return asyncio.run(read_table(config, namespace))
