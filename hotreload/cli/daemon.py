"""``hotreload daemon``: run the publisher daemon until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

import click

from ..config import http_address
from ..errors import ConfigError
from ..logs import DAEMON_LEVEL, configure_logging
from ._base import State, handle_errors
from ._extras import require_extra


@click.command("daemon")
@click.option("--http", "http", default=None, metavar="HOST:PORT",
              help="Address of health, metrics and the console [default: daemon.http]; "
                   "'off' disables it.")
@click.pass_obj
@handle_errors
def daemon(state: State, http: str | None) -> None:
    """Watch the configured sources and publish their settings to Redis.

    Runs until SIGTERM or SIGINT, then stops cleanly (exit status 0). See docs/daemon.md.
    """
    require_extra("daemon", "the daemon")
    from ..daemon.core import Daemon

    config = state.config
    if http is not None:
        try:
            address = http_address(http)
        except ValueError as exc:
            raise ConfigError(f"--http {http!r}: {exc}") from None
        section = config.daemon.model_copy(update={"http": address})
        config = config.model_copy(update={"daemon": section})
    # --log-format json wins; else daemon.log_format
    fmt = state.log_format if state.log_format == "json" else config.daemon.log_format
    configure_logging(verbose=state.verbose, fmt=fmt, level=DAEMON_LEVEL)
    asyncio.run(Daemon(config, handle_signals=True).run())
