"""Which command modules make up the CLI (one import per module)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    from . import core, demo

    for command in [*core.COMMANDS, *demo.COMMANDS]:
        group.add_command(command)

    from . import validate

    group.add_command(validate.validate_command)
