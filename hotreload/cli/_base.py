"""The root click group, shared options and error handling."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._version import __version__
from ..config import HotReloadConfig, load_config
from ..errors import HotReloadError
from ..logs import configure_logging

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """What the root group passes to every command (``ctx.obj``)."""

    def __init__(self, config_path: str | None, verbose: bool, log_format: str) -> None:
        self.config_path = config_path
        self.verbose = verbose
        self.log_format = log_format
        self._config: HotReloadConfig | None = None

    @property
    def config(self) -> HotReloadConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hotreload")
@click.option("-c", "--config", "config_path", envvar="HOTRELOAD_CONFIG", default=None,
              metavar="FILE", help="Config file [default: ./config.yaml; env HOTRELOAD_CONFIG].")
@click.option("-v", "--verbose", is_flag=True,
              help="Debug logging and full tracebacks (by default commands log only warnings "
                   "and errors; the daemon logs from INFO).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Log line format (stderr).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool, log_format: str) -> None:
    """Broadcast configuration changes to every process of a cluster, over Redis."""
    configure_logging(verbose=verbose, fmt=log_format)
    ctx.obj = State(config_path, verbose, log_format)


def handle_errors(func: F) -> F:
    """Turn hotreload (and unexpected) errors into one line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HotReloadError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if click.get_current_context().find_object(State) and _verbose():
                raise
            _fail(f"unexpected error: {type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]


def _verbose() -> bool:
    state = click.get_current_context().find_object(State)
    return bool(state and state.verbose)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def namespace_option(func: F) -> F:
    return click.option("-n", "--namespace", default=None,
                        help="Namespace [default: the config's namespace].")(func)


def main() -> None:
    from . import _register

    _register.register(cli)
    cli(prog_name="hotreload")


logging.getLogger("hotreload").addHandler(logging.NullHandler())
