"""Which command modules make up the CLI (one import per module)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    from . import core, db, demo, validate
    from .daemon import daemon

    for command in [*core.COMMANDS, *demo.COMMANDS]:
        group.add_command(command)
    group.add_command(validate.validate_command)
    group.add_command(db.db_group)
    group.add_command(daemon)
