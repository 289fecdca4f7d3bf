"""Where ``schema: "mod:Class"`` is imported from: one rule (the config file's directory, then the
current directory) for the daemon's file source and for ``hotreload validate``."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hotreload.cli import _register, cli
from hotreload.config import load_config
from hotreload.daemon.setup import build_sources
from hotreload.documents import load_schema
from hotreload.errors import ConfigError

SCHEMA = """
from pydantic import BaseModel, ConfigDict, Field

class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool_size: int = Field(10, le=500)
    where: str = {where!r}
"""


@pytest.fixture
def module() -> Iterator[str]:
    """A module name of this test alone (forgotten afterwards)."""
    name = f"schema_{uuid.uuid4().hex[:10]}"
    yield name
    sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def _keep_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("HOTRELOAD_CONFIG", raising=False)
    logger = logging.getLogger("hotreload")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def layout(tmp_path: Path, module: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``conf/`` holds config.yaml, settings.yaml and the schema; the cwd is elsewhere."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / f"{module}.py").write_text(SCHEMA.format(where="config dir"))
    (conf / "settings.yaml").write_text("pool_size: 20\n")
    (conf / "config.yaml").write_text(
        "sources:\n  files:\n"
        f"    - {{path: {conf / 'settings.yaml'}, namespace: app, schema: '{module}:Settings'}}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return conf


def test_the_daemon_imports_the_schema_next_to_its_config_file(layout: Path,
                                                               module: str) -> None:
    before = sys.path[:]
    (source,) = build_sources(load_config(layout / "config.yaml"))  # what Daemon() runs
    (entry,) = source._files  # type: ignore[attr-defined]
    assert entry.model.__module__ == module
    assert entry.model().where == "config dir"
    assert sys.path == before  # looked there for the import only


def test_validate_imports_the_schema_next_to_the_config_file(layout: Path, module: str) -> None:
    _register.register(cli)
    result = CliRunner().invoke(cli, ["-c", str(layout / "config.yaml"), "validate",
                                      str(layout / "settings.yaml"), "--schema",
                                      f"{module}:Settings"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: {layout / 'settings.yaml'} (1 key)\n"
    (layout / "bad.yaml").write_text("pool_size: 501\n")
    result = CliRunner().invoke(cli, ["-c", str(layout / "config.yaml"), "validate",
                                      str(layout / "bad.yaml"), "--schema",
                                      f"{module}:Settings"])
    assert result.exit_code == 1
    assert "pool_size: Input should be less than or equal to 500" in result.stderr


def test_then_the_current_directory(tmp_path: Path, module: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    conf, cwd = tmp_path / "conf", tmp_path / "cwd"
    conf.mkdir()
    cwd.mkdir()
    (cwd / f"{module}.py").write_text(SCHEMA.format(where="cwd"))
    monkeypatch.chdir(cwd)
    assert load_schema(f"{module}:Settings", config_dir=conf)().where == "cwd"
    sys.modules.pop(module)
    (conf / f"{module}.py").write_text(SCHEMA.format(where="config dir"))
    assert load_schema(f"{module}:Settings", config_dir=conf)().where == "config dir"
    sys.modules.pop(module)
    _register.register(cli)  # validate without a config file: the current directory
    (cwd / "s.yaml").write_text("pool_size: 1\n")
    result = CliRunner().invoke(cli, ["validate", "s.yaml", "--schema", f"{module}:Settings"])
    assert result.exit_code == 0, result.output


def test_a_schema_found_nowhere_is_one_line(layout: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot import 'nowhere_[0-9a-f]+'"):
        load_schema(f"nowhere_{uuid.uuid4().hex[:8]}:Settings", config_dir=layout)
