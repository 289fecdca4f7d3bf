"""``hotreload init``: write a starting config.yaml, signing on (a new random HMAC key)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from ..config import build_config
from ..errors import ConfigError
from ..wire import check_name
from ._base import State, handle_errors

_TEMPLATE = """\
# hotreload configuration: docs/configuration.md. Written by `hotreload init`.
redis:
  url: {url}
namespace: {namespace}
security:
  # Signs every event, head and checkpoint (docs/security.md): subscribers reject anything
  # not signed with it. Give this same key to every publisher, daemon and subscriber of the
  # deployment, and keep it secret (this file is readable by its owner only).
  hmac_key: "{key}"
"""


@click.command("init")
@click.option("--redis", "url", default="redis://localhost:6379/0", show_default=True,
              help="The Redis URL to write.")
@click.option("--default-namespace", "namespace", default="app", show_default=True,
              help="The default namespace to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing file (with a NEW key).")
@click.pass_obj
@handle_errors
def init_command(state: State | None, url: str, namespace: str, force: bool) -> None:
    """Write a config file (./config.yaml, or -c FILE) with signing on.

    The file holds a new random security.hmac_key and is created readable by its owner only.
    The key is never printed.
    """
    path = Path(state.config_path if state and state.config_path else "config.yaml")
    check_name(namespace, "namespace")
    key = secrets.token_urlsafe(32)
    text = _TEMPLATE.format(url=_yaml_string(url), namespace=namespace, key=key)
    import yaml

    build_config(yaml.safe_load(text), origin=str(path))  # a bad --redis fails here
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; pass --force to overwrite it (with a new key: "
                          "every process must then get the new file)") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)
    click.echo(f"wrote {path} (signing on: security.hmac_key is a new random key; give this "
               "file, or the key, to every publisher, daemon and subscriber)")


def _yaml_string(value: str) -> str:
    import json

    return json.dumps(value)  # a JSON string is a YAML string
