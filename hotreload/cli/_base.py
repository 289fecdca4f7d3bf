"""The root click group, shared options and error handling."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from .._version import __version__
from ..config import HotReloadConfig, load_config
from ..errors import HotReloadError, ProtocolError
from ..logs import configure_logging
from ..wire import check_name

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


#: The exit code when the reader of stdout went away, as if killed by SIGPIPE (128 + 13).
EXIT_STDOUT_GONE = 141


class RootGroup(click.Group):
    """The root group: where a reader of stdout that went away (``hotreload history | head
    -1``) ends every command quietly, with `EXIT_STDOUT_GONE` and no message."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        with _quiet_when_stdout_is_gone():  # --help, --version
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _quiet_when_stdout_is_gone():
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return result


@contextlib.contextmanager
def _quiet_when_stdout_is_gone() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        stdout_gone()
        raise click.exceptions.Exit(EXIT_STDOUT_GONE) from None


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
        except BrokenPipeError:
            raise  # the reader of stdout went away: the root group ends quietly
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


def stdout_gone() -> None:
    """Send what is left for stdout to /dev/null: its reader went away, nothing is wrong."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file behind stdout (e.g. a test runner)
        pass


def _verbose() -> bool:
    state = click.get_current_context().find_object(State)
    return bool(state and state.verbose)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _check_namespace(_ctx: click.Context, _param: click.Parameter,
                     value: str | None) -> str | None:
    """An explicit ``-n`` must be a valid name: ``-n "$UNSET"`` never means the default."""
    if value is None:
        return None
    try:
        return check_name(value, "namespace")
    except ProtocolError as exc:
        raise click.BadParameter(str(exc).removeprefix("invalid namespace ")) from None


def confirm(question: str, nothing_done: str) -> None:
    """Ask ``question`` on the terminal; without a terminal, or without a yes, stop here.

    Commands that ask also take ``-y/--yes`` (and skip this); ``nothing_done`` says what the
    refusal leaves untouched.
    """
    if not (sys.stdin and sys.stdin.isatty()):  # None when started with stdin closed
        raise click.UsageError(f"{nothing_done}: no terminal to confirm on; pass --yes")
    if not click.confirm(question, default=False):
        click.echo(f"{nothing_done}: not confirmed", err=True)
        sys.exit(1)


def namespace_option(func: F) -> F:
    return click.option("-n", "--namespace", default=None, callback=_check_namespace,
                        help="Namespace [default: the config's namespace].")(func)


def main() -> None:
    from . import _register

    _register.register(cli)
    try:
        cli(prog_name="hotreload")
    finally:
        try:
            sys.stdout.flush()  # click's own output (--help, usage errors), else Python's exit
        except BrokenPipeError:
            stdout_gone()


logging.getLogger("hotreload").addHandler(logging.NullHandler())
