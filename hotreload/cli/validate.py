"""``hotreload validate``: check settings files offline, as the daemon would (for CI)."""

from __future__ import annotations

import sys

import click

from ..config import existing_config_dir
from ..documents import (
    FORMATS,
    detect_format,
    load_schema,
    parse_document,
    read_bytes,
    schema_problems,
)
from ..errors import ConfigError, DocumentError
from ._base import State, handle_errors


@click.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--schema", metavar="pkg.mod:Settings", default=None,
              help="Pydantic model the documents must validate against (looked for in the "
                   "config file's directory, then the current directory, as the daemon does).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Document format [default: from the file extension].")
@click.pass_obj
@handle_errors
def validate_command(state: State | None, files: tuple[str, ...], schema: str | None,
                     fmt: str | None) -> None:
    """Check settings FILEs exactly as the daemon does before publishing them.

    Prints "ok: FILE (N keys)" per good file; prints every problem on stderr and exits 1 if any
    file is bad. Nothing is read from or sent to Redis.
    """
    config_dir = existing_config_dir(state.config_path if state else None)
    model = load_schema(schema, config_dir=config_dir) if schema else None
    failed = False
    for file in files:
        try:
            file_format = detect_format(file, fmt)
            raw = read_bytes(file)
            doc = parse_document(raw, file_format, origin=file)
        except (ConfigError, DocumentError) as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
            continue
        yaml_text = raw.decode("utf-8-sig") if doc.format == "yaml" else None
        problems = schema_problems(doc.data, model, yaml_text=yaml_text) if model else []
        for problem in problems:
            click.echo(f"error: {problem.render(file)}", err=True)
        if problems:
            failed = True
            continue
        n = len(doc.flat)
        click.echo(f"ok: {file} ({n} key{'' if n == 1 else 's'})")
    if failed:
        sys.exit(1)
