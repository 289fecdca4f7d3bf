"""How the CLI reads its arguments (no services: bad input fails before any connection)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hotreload import ProtocolError
from hotreload.cli import _register, cli
from hotreload.publisher import AsyncPublisher
from hotreload.subscriber import AsyncSubscriber

#: Valid arguments for every command that takes ``-n``, apart from the namespace.
NAMESPACED = {
    "publish": ["a=1"],
    "invalidate": ["k"],
    "get": [],
    "history": [],
    "rollback": ["1", "--yes"],
    "tail": ["--max-events", "1"],
    "status": [],
}


@pytest.fixture(scope="module")
def app() -> click.Group:
    _register.register(cli)
    return cli


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """The CLI configures the ``hotreload`` logger; give it back as it was."""
    logger = logging.getLogger("hotreload")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def unreachable(tmp_path: Path) -> Path:
    """A config whose Redis refuses connections: any command that gets to run fails with 1."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("redis:\n  url: redis://127.0.0.1:1/0\nnamespace: real\n")
    return cfg


def test_every_namespaced_command_is_listed(app: click.Group) -> None:
    def has_namespace(cmd: click.Command) -> bool:
        return any("--namespace" in p.opts for p in cmd.params if isinstance(p, click.Option))

    assert {name for name, cmd in app.commands.items() if has_namespace(cmd)} == set(NAMESPACED)


@pytest.mark.parametrize("command", sorted(NAMESPACED))
@pytest.mark.parametrize("bad", ["", " ", "a b", "x" * 129, "ns/1"])
def test_an_explicit_invalid_namespace_is_a_usage_error(
    app: click.Group, unreachable: Path, command: str, bad: str
) -> None:
    result = CliRunner().invoke(app, ["-c", str(unreachable), command, "-n", bad,
                                      *NAMESPACED[command]])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '-n' / '--namespace': {bad!r}: use 1-128 characters" \
        in result.stderr
    assert "Traceback" not in result.output


async def test_the_library_refuses_an_empty_namespace_instead_of_using_the_default() -> None:
    for cls in (AsyncPublisher, AsyncSubscriber):
        with pytest.raises(ProtocolError, match="invalid namespace ''"):
            cls("redis://127.0.0.1:1/0", namespace="")
    pub = AsyncPublisher("redis://127.0.0.1:1/0", namespace="real")
    try:
        for call in (pub.publish({"a": 1}, namespace=""), pub.snapshot(""), pub.history(""),
                     pub.invalidate(["k"], namespace=""), pub.rollback(0, namespace="")):
            with pytest.raises(ProtocolError, match="invalid namespace ''"):
                await call
    finally:
        await pub.aclose()
