"""``hotreload db install|uninstall`` with click's CliRunner against the real server."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from _pg_helpers import PG_URL, _free_port, unique
from click.testing import CliRunner

from hotreload.cli import cli
from hotreload.cli._register import register

pytestmark = pytest.mark.integration

register(cli)


def table_exists(name: str) -> bool:
    with psycopg.connect(PG_URL) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def test_install_twice_then_uninstall(tmp_path: Path) -> None:
    table = unique("hr_cli")
    config = tmp_path / "config.yaml"
    config.write_text(f"postgres:\n  dsn: {PG_URL}\n  settings_table: {table}\n")
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli, ["-c", str(config), "db", "install"])
        assert result.exit_code == 0, result.output
        assert f"installed table {table}" in result.output
    assert table_exists(table)
    result = runner.invoke(cli, ["-c", str(config), "db", "uninstall"])
    assert result.exit_code == 2
    assert table_exists(table)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} VALUES ('app', 'a', '1'), ('app', 'b', '2')")
    result = runner.invoke(cli, ["-c", str(config), "db", "uninstall", "--yes"])
    assert result.exit_code == 0, result.output
    assert not table_exists(table)
    assert result.stdout == (
        f"dropped table {table} (2 rows), table {table}_namespaces (1 row), "
        f"function {table}_register(), function {table}_notify(), function {table}_touch(), "
        f"function {table}_payload(text, text, text) on {PG_URL}\n")


def test_uninstall_reports_what_it_dropped_even_nothing(tmp_path: Path) -> None:
    table = unique("hr_cli")
    config = tmp_path / "config.yaml"
    config.write_text(f"postgres:\n  dsn: {PG_URL}\n  settings_table: {table}\n")
    result = CliRunner().invoke(cli, ["-c", str(config), "db", "uninstall", "--yes"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"nothing to drop: no table {table} or its functions on "
                             f"{PG_URL}\n")
    with psycopg.connect(PG_URL, autocommit=True) as conn:  # half of an old install
        conn.execute(f'CREATE FUNCTION "{table}_touch"() RETURNS int LANGUAGE sql AS $$ '
                     "SELECT 1 $$")
    result = CliRunner().invoke(cli, ["-c", str(config), "db", "uninstall", "--yes"])
    assert result.stdout == f"dropped function {table}_touch() on {PG_URL}\n"


def test_dsn_option_wins_and_password_is_never_shown(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("namespace: app\n")
    url = f"postgresql://postgres:s3cret@127.0.0.1:{_free_port()}/test?connect_timeout=2"
    result = CliRunner().invoke(cli, ["-c", str(config), "db", "install", "--dsn", url])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot connect to PostgreSQL")
    assert "s3cret" not in result.output


def test_no_dsn_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("namespace: app\n")
    result = CliRunner().invoke(cli, ["-c", str(config), "db", "install"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: no PostgreSQL DSN: pass --dsn or set postgres.dsn in the config")
