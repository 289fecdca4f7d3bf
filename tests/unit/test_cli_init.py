"""``hotreload init``: a config with signing on, readable by its owner only, key never shown."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hotreload.cli import _register, cli
from hotreload.config import load_config


@pytest.fixture(scope="module")
def app() -> click.Group:
    _register.register(cli)
    return cli


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    logger = logging.getLogger("hotreload")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def test_init_writes_a_signed_config(app: click.Group, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOTRELOAD_CONFIG", raising=False)
    result = CliRunner().invoke(app, ["init", "--redis", "redis://r:6379/0", "--default-namespace",
                                      "shop"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "config.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_config(path)
    key = config.security.key_bytes()
    assert key is not None and len(key) >= 32
    assert key.decode() not in result.output
    assert config.namespace == "shop" and config.redis.effective_url() == "redis://r:6379/0"
    assert "signing on" in result.output


def test_init_never_overwrites_without_force(app: click.Group, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    assert CliRunner().invoke(app, ["-c", str(path), "init"]).exit_code == 0
    before = path.read_text()
    again = CliRunner().invoke(app, ["-c", str(path), "init"])
    assert again.exit_code == 1
    assert "exists; pass --force" in again.stderr and path.read_text() == before
    forced = CliRunner().invoke(app, ["init", "-c", str(path), "--force"])
    assert forced.exit_code == 0 and path.read_text() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_refuses_a_bad_namespace(app: click.Group, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    result = CliRunner().invoke(app, ["-c", str(path), "init", "--default-namespace", "a b"])
    assert result.exit_code == 1 and not path.exists()
    assert "invalid namespace" in result.stderr
