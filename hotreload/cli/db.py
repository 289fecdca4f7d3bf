"""``hotreload db install|uninstall``: the settings table and its NOTIFY trigger."""

from __future__ import annotations

import asyncio

import click
from pydantic import SecretStr

from ..config import PostgresSettings
from ..errors import ConfigError
from ._base import State, handle_errors
from ._extras import require_extra


def _settings(state: State, dsn: str | None) -> PostgresSettings:
    require_extra("daemon", "hotreload db", ["psycopg"])
    configured = state.config.postgres
    if dsn is not None:
        return (configured or PostgresSettings()).model_copy(update={"dsn": SecretStr(dsn)})
    if configured is None:
        raise ConfigError("no PostgreSQL DSN: pass --dsn or set postgres.dsn in the config")
    return configured


dsn_option = click.option(
    "--dsn", default=None, metavar="DSN",
    help="PostgreSQL connection string [default: the config's postgres.dsn].")


@click.group("db")
def db_group() -> None:
    """Manage the SQL objects of the PostgreSQL source."""


@db_group.command("install")
@dsn_option
@click.pass_obj
@handle_errors
def install(state: State, dsn: str | None) -> None:
    """Create (or update) the settings table and its NOTIFY trigger; safe to re-run."""
    settings = _settings(state, dsn)
    from ..daemon import db

    asyncio.run(db.install(settings))
    click.echo(f"installed table {settings.settings_table} (NOTIFY channel "
               f"{settings.notify_channel}) on {settings.display_dsn()}")


@db_group.command("uninstall")
@dsn_option
@click.option("--yes", is_flag=True, help="Really drop the table and every setting in it.")
@click.pass_obj
@handle_errors
def uninstall(state: State, dsn: str | None, yes: bool) -> None:
    """Drop the settings table (with its rows), its trigger and functions."""
    settings = _settings(state, dsn)
    if not yes:
        raise click.UsageError(f"this drops table {settings.settings_table} and its rows; "
                               "pass --yes to confirm")
    from ..daemon import db

    dropped = asyncio.run(db.uninstall(settings))
    if dropped:
        click.echo(f"dropped {', '.join(dropped)} on {settings.display_dsn()}")
    else:
        click.echo(f"nothing to drop: no table {settings.settings_table} or its functions on "
                   f"{settings.display_dsn()}")
