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
from hotreload.config import build_config, http_address, load_config
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
    assert result.stderr == ("error: --http 'nope': must be host:port, e.g. 127.0.0.1:9464, "
                             "or off\n")


def test_config_checks_daemon_http() -> None:
    assert build_config({"daemon": {"http": "[::1]:9464"}}).daemon.http == "[::1]:9464"
    assert build_config({"daemon": {"http": None}}).daemon.http is None
    with pytest.raises(ConfigError, match=r"daemon\.http: must be host:port"):
        build_config({"daemon": {"http": "9464"}})


@pytest.mark.parametrize("off", ["off", "OFF", None])
def test_http_off_in_config_and_env_as_on_the_command_line(
        off: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_config({"daemon": {"http": off}}).daemon.http is None
    assert http_address(off) is None  # what `daemon --http off` uses
    if off is not None:
        monkeypatch.setenv("HOTRELOAD_DAEMON__HTTP", off)
        assert build_config({}).daemon.http is None


def test_one_rule_for_config_and_command_line() -> None:
    for good in ("127.0.0.1:9464", "[::1]:0", "0.0.0.0:65535"):
        assert http_address(good) == good == build_config({"daemon": {"http": good}}).daemon.http
    for bad in ("9464", "host:", ":80", "h:65536", "h:x"):
        with pytest.raises(ValueError, match="must be host:port") as cli_error:
            http_address(bad)
        with pytest.raises(ConfigError) as config_error:
            build_config({"daemon": {"http": bad}})
        assert str(config_error.value) == f"config: daemon.http: {cli_error.value}"


def test_daemon_http_off_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    for text in ('daemon: {http: "off"}\n', "daemon: {http: off}\n", "daemon: {http: null}\n"):
        config.write_text(text)  # unquoted, YAML reads off as false
        assert load_config(config).daemon.http is None
    config.write_text("daemon: {http: on}\n")
    with pytest.raises(ConfigError, match=r"daemon\.http: Input should be a valid string"):
        load_config(config)


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "hotreload", "--version"], capture_output=True,
                         text=True, check=True, timeout=60)
    assert "hotreload" in out.stdout


@pytest.mark.parametrize(("args", "level"), [
    ([], logging.INFO),  # the daemon's log is its only output
    (["-v"], logging.DEBUG),
])
def test_the_daemon_logs_from_info_other_commands_from_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], level: int) -> None:
    import hotreload.daemon.core

    seen: list[int] = []

    class FakeDaemon:
        def __init__(self, config: object, **kwargs: object) -> None:
            pass

        async def run(self) -> None:
            seen.append(logging.getLogger("hotreload").level)

    monkeypatch.setattr(hotreload.daemon.core, "Daemon", FakeDaemon)
    register(cli)
    config = tmp_path / "config.yaml"
    config.write_text("daemon: {http: off}\n")
    result = CliRunner().invoke(cli, [*args, "-c", str(config), "daemon"])
    assert result.exit_code == 0, result.output
    assert seen == [level]
    result = CliRunner().invoke(cli, [*args, "-c", str(config), "validate", str(config)])
    assert result.exit_code == 0, result.output
    assert logging.getLogger("hotreload").level == (logging.DEBUG if args else logging.WARNING)
