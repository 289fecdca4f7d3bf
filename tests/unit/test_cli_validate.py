"""``hotreload validate``: offline checks for CI, exit codes and messages (no traceback)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from hotreload.cli import _register, cli

TESTS_DIR = Path(__file__).resolve().parents[1]


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
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", sys.path[:])  # validate --schema adds the cwd to it
    (tmp_path / "good.yaml").write_text("db:\n  host: db1\n  pool_size: 5\nname: app\n")
    (tmp_path / "one.json").write_text('{"name": "x"}')
    (tmp_path / "good.toml").write_text('[db]\npool_size = 9\n')
    (tmp_path / "bad.yaml").write_text("db:\n  pool_size: [5\n")
    (tmp_path / "schema_bad.yaml").write_text("db:\n  pool_size: many\ncolour: red\n")
    (tmp_path / "settings.conf").write_text("a: 1\n")
    (tmp_path / "empty.json").write_text("")
    return tmp_path


def run(app: click.Group, *args: str) -> Result:
    return CliRunner().invoke(app, ["validate", *args])


def test_good_files(app: click.Group, files: Path) -> None:
    result = run(app, "good.yaml", "one.json", "good.toml")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "ok: good.yaml (3 keys)", "ok: one.json (1 key)", "ok: good.toml (1 key)",
    ]
    assert result.stderr == ""


def test_syntax_error(app: click.Group, files: Path) -> None:
    result = run(app, "bad.yaml")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: bad.yaml:3:1: invalid YAML: ")
    assert "Traceback" not in result.output


def test_every_schema_problem_on_its_own_line(app: click.Group, files: Path) -> None:
    (files / "cfgschemas.py").write_text((TESTS_DIR / "file_schemas.py").read_text())
    # the module sits in the current directory, as in a config repo: validate finds it there
    result = run(app, "good.yaml", "schema_bad.yaml", "--schema", "cfgschemas:AppSettings")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["ok: good.yaml (3 keys)"]
    assert result.stderr.splitlines() == [
        "error: schema_bad.yaml:2: db.pool_size: Input should be a valid integer, "
        "unable to parse string as an integer",
        "error: schema_bad.yaml:3: colour: unknown key",
    ]


def test_all_files_are_checked_even_after_a_failure(app: click.Group, files: Path) -> None:
    result = run(app, "empty.json", "missing.yaml", "settings.conf", "good.yaml")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["ok: good.yaml (3 keys)"]
    errors = result.stderr.splitlines()
    assert errors[0] == "error: empty.json: the file is empty"
    assert errors[1] == "error: missing.yaml: no such file"
    assert errors[2].startswith("error: settings.conf: cannot tell the format")


def test_explicit_format(app: click.Group, files: Path) -> None:
    assert run(app, "settings.conf", "--format", "yaml").stdout == "ok: settings.conf (1 key)\n"
    result = run(app, "good.yaml", "--format", "json")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: good.yaml:1:1: invalid JSON: ")


def test_bad_schema_spec(app: click.Group, files: Path) -> None:
    result = run(app, "good.yaml", "--schema", "no_such_mod_abc:Settings")
    assert result.exit_code == 1
    assert result.stderr == ("error: schema 'no_such_mod_abc:Settings': cannot import "
                             "'no_such_mod_abc': ModuleNotFoundError: No module named "
                             "'no_such_mod_abc'\n")


def test_needs_a_file(app: click.Group) -> None:
    result = run(app)
    assert result.exit_code == 2
    assert "Missing argument 'FILE...'" in result.stderr


def test_does_not_need_a_config(app: click.Group, files: Path) -> None:
    (files / "config.yaml").write_text("this: is: not: valid\n")
    assert run(app, "good.yaml").exit_code == 0


def test_hostile_files_are_errors_and_the_next_files_are_checked(
        app: click.Group, files: Path) -> None:
    """A deep document printed "unexpected error: RecursionError" and stopped; a FIFO hung."""
    (files / "deep.yaml").write_text("b: " + "[" * 5000 + "]" * 5000 + "\n")
    (files / "deep.json").write_text('{"b": ' + "[" * 100_000 + "]" * 100_000 + "}")
    os.mkfifo(files / "pipe.yaml")
    (files / "bomb.yaml").write_text("".join(  # "billion laughs": 9 ** 9 "lol"s
        f"{n}: &{n} [" + ",".join([f"*{p}" if p else "lol"] * 9) + "]\n"
        for p, n in zip(["", *"abcdefgh"], "abcdefghi", strict=True)))
    result = run(app, "deep.yaml", "deep.json", "pipe.yaml", "bomb.yaml", "good.yaml")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["ok: good.yaml (3 keys)"]
    assert result.stderr.splitlines() == [
        "error: deep.yaml: invalid YAML: nested too deeply",
        "error: deep.json: invalid JSON: nested too deeply",
        "error: pipe.yaml: cannot read: not a regular file (a FIFO)",
        "error: bomb.yaml:7:4: YAML too large: with its aliases expanded, the document holds "
        "more than 1000000 nodes",
    ]
