"""The ``daemon`` command's wiring (no services: it fails before connecting anywhere)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotreload.cli import cli
from hotreload.cli._register import register
from hotreload.config import build_config
from hotreload.errors import ConfigError


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI configures the ``hotreload`` logger; undo it for the other tests."""
    logger = logging.getLogger("hotreload")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def test_daemon_is_registered() -> None:
    register(cli)
    result = CliRunner().invoke(cli, ["daemon", "--help"])
    assert result.exit_code == 0
    assert "SIGTERM" in result.output


def test_bad_http_address_is_one_line_error(tmp_path: Path) -> None:
    register(cli)
    config = tmp_path / "config.yaml"
    config.write_text("redis: {url: 'redis://127.0.0.1:1/0'}\n")
    result = CliRunner().invoke(cli, ["-c", str(config), "daemon", "--http", "nope"])
    assert result.exit_code == 1
    assert "error: daemon.http: 'nope' must be host:port" in result.output


def test_config_checks_daemon_http() -> None:
    assert build_config({"daemon": {"http": "[::1]:9464"}}).daemon.http == "[::1]:9464"
    assert build_config({"daemon": {"http": None}}).daemon.http is None
    with pytest.raises(ConfigError, match=r"daemon\.http: must be host:port"):
        build_config({"daemon": {"http": "9464"}})


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "hotreload", "--version"], capture_output=True,
                         text=True, check=True, timeout=60)
    assert "hotreload" in out.stdout
