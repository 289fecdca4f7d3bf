"""How the CLI reads its arguments (no services: bad input fails before any connection)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from hotreload import ProtocolError
from hotreload.cli import _register, cli
from hotreload.cli.core import parse_assignments, parse_value
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
    "diff": ["1"],
    "promote": [],
    "abort": [],
    "repair": ["--keep-readable", "--yes"],
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


@pytest.mark.parametrize(("text", "value"), [
    ("20", 20), ("-1.5e3", -1500.0), (" 7 ", 7), ("true", True), ("false", False),
    ("null", None), ("[1, 2]", [1, 2]), ('{"x": 1}', {"x": 1}), ('  {"x": 1}', {"x": 1}),
    ('"20"', "20"), ('"{x"', "{x"), ("hello", "hello"), ("hello world", "hello world"),
    ("", ""), ("007", "007"), ("1.", "1."), ("v1.2", "v1.2"), ("True", "True"),
    ("NaN", "NaN"), ("Infinity", "Infinity"), ("x{", "x{"), ("a=b", "a=b"), (" hi", " hi"),
])
def test_values_are_json_when_they_look_like_json(text: str, value: Any) -> None:
    assert parse_value("k", text) == value
    assert type(parse_value("k", text)) is type(value)


@pytest.mark.parametrize(("text", "error"), [
    ('{"x": 1', "the value of 'a' is not valid JSON: Expecting ',' delimiter: line 1 column 8"),
    ("[1, 2", "the value of 'a' is not valid JSON: Expecting ',' delimiter"),
    ('"unclosed', "the value of 'a' is not valid JSON: Unterminated string"),
    ("{x: 1}", "the value of 'a' is not valid JSON: Expecting property name"),
    ("1e400", "the value of 'a' is too large for a JSON number"),
    ("9" * 5000, "the value of 'a' is no JSON number: Exceeds the limit"),
])
def test_a_value_that_starts_like_json_must_be_json(text: str, error: str) -> None:
    with pytest.raises(click.BadParameter, match=re.escape(error)):
        parse_value("a", text)


@pytest.mark.parametrize(("items", "deletes", "error"), [
    (["x=1", "x=2"], [], "'x' is given twice"),
    (["x=1", " x =2"], [], "'x' is given twice"),
    (["x=1", "x.y=2"], [], "'x' and 'x.y' overlap"),
    (["x.y.z=1", "x=2"], [], "'x.y.z' and 'x' overlap"),
    (["x=1"], ["x"], "'x' is set, and --delete 'x' deletes it"),
    (["x.y=1"], ["x"], "'x.y' is set, and --delete 'x' deletes it"),
    (["x=1"], ["x.y"], "'x' is set, and --delete 'x.y' deletes it"),
    (["=1"], [], "'=1' is not KEY=VALUE"),
    (["x"], [], "'x' is not KEY=VALUE"),
])
def test_assignments_that_conflict_are_refused(items: list[str], deletes: list[str],
                                               error: str) -> None:
    with pytest.raises(click.BadParameter, match=re.escape(error)):
        parse_assignments(items, deletes)


def test_assignments_that_do_not_overlap_are_fine() -> None:
    assert parse_assignments(["x.y=1", "x.z=2", "xy=3", "x.yz=[]"], ["x.w", "x.y2"]) == {
        "x.y": 1, "x.z": 2, "xy": 3, "x.yz": []}
    assert parse_assignments(["a=20", "b={", "c=true"], literal=True) == {
        "a": "20", "b": "{", "c": "true"}


@pytest.mark.parametrize("args", [["a={\"x\": 1"], ["x=1", "x.y=2"], ["x=1", "--delete", "x"]])
def test_publish_refuses_bad_assignments_before_connecting(
    app: click.Group, unreachable: Path, args: list[str]
) -> None:
    result = CliRunner().invoke(app, ["-c", str(unreachable), "publish", *args])
    assert result.exit_code == 2, result.output
    assert "Error: Invalid value for KEY=VALUE: " in result.stderr
    assert "Traceback" not in result.output


def test_publish_help_states_the_value_rules(app: click.Group) -> None:
    text = CliRunner().invoke(app, ["publish", "--help"]).stdout
    assert 'VALUE is JSON when it starts with { [ or "' in text
    assert "-s, --string" in text
