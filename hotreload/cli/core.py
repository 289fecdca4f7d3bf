"""publish, invalidate, get, history, rollback, tail, status."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
