"""The optional extras a command needs, and the one line it prints when one is missing."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import IO, Any, Final

import click

#: The top-level modules each extra of pyproject.toml installs.
EXTRAS: Final[Mapping[str, tuple[str, ...]]] = {
    "daemon": ("psycopg", "watchfiles", "prometheus_client", "aiohttp"),
}


class MissingExtra(click.ClickException):
    """A command needs an extra that is not installed: ``error: ...``, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def require_extra(extra: str, what: str, modules: Sequence[str] | None = None) -> None:
    """Import the modules of ``extra`` (or just ``modules`` of it), or raise `MissingExtra`:
    ``{what} needs the {extra} extra: pip install 'hotreload[{extra}]'``."""
    for name in modules if modules is not None else EXTRAS[extra]:
        try:
            importlib.import_module(name)
        except ImportError:  # not installed, or installed without its binary part
            raise MissingExtra(f"{what} needs the {extra} extra: "
                               f"pip install 'hotreload[{extra}]'") from None
