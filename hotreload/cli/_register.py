"""Which command modules make up the CLI, and the options every command shares."""

from __future__ import annotations

import click

from ._base import State


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    state = ctx.find_object(State)
    if value is not None and state is not None:
        state.config_path = value


def _config_option() -> click.Option:
    """``-c/--config`` after the command name too: ``hotreload daemon -c config.yaml``."""
    return click.Option(["-c", "--config"], metavar="FILE", expose_value=False,
                        callback=_set_config, help="Config file (same as before the command).")


def _add_shared_options(command: click.Command) -> None:
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_shared_options(sub)
    elif not any("--config" in p.opts for p in command.params if isinstance(p, click.Option)):
        command.params.append(_config_option())


def register(group: click.Group) -> None:
    from . import core, db, demo, init, repair, rollout, validate
    from .daemon import daemon

    for command in [*core.COMMANDS, *rollout.COMMANDS, *demo.COMMANDS]:
        group.add_command(command)
    group.add_command(validate.validate_command)
    group.add_command(init.init_command)
    group.add_command(repair.repair)
    group.add_command(db.db_group)
    group.add_command(daemon)
    for command in group.commands.values():
        _add_shared_options(command)
