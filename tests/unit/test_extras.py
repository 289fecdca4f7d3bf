"""Extras: ``pip install hotreload`` is enough for pods; the daemon and ``hotreload db`` need
``hotreload[daemon]`` and say so in one line when it is missing.

A missing package is simulated in a subprocess by an import hook that refuses it, as an
environment without it would (nothing is uninstalled).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hotreload.cli._extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
DAEMON_EXTRA = EXTRAS["daemon"]

_HIDE = textwrap.dedent("""
    import importlib.abc, sys

    HIDDEN = {hidden!r}

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Hide())
""")


def run_without(hidden: tuple[str, ...], code: str, cwd: Path = ROOT,
                ) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the ``hidden`` packages cannot be imported."""
    script = _HIDE.format(hidden=hidden) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=45, cwd=cwd)


def cli_without(hidden: tuple[str, ...], *args: str,
                cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return run_without(hidden, f"""
        sys.argv = ["hotreload", *{list(args)!r}]
        from hotreload.cli import main
        main()
    """, cwd)


def test_the_extra_lists_the_packages_of_pyproject() -> None:
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra = {Requirement(r).name for r in project["optional-dependencies"]["daemon"]}
    assert extra == {"psycopg", "watchfiles", "prometheus-client", "aiohttp"}
    assert {m.replace("_", "-") for m in DAEMON_EXTRA} == extra
    base = {Requirement(r).name for r in project["dependencies"]}
    assert base == {"redis", "pydantic", "pydantic-settings", "click", "pyyaml"}


@pytest.mark.parametrize("missing", DAEMON_EXTRA)
def test_the_daemon_without_its_extra_is_one_line(missing: str, tmp_path: Path) -> None:
    result = cli_without((missing,), "daemon", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == ("error: the daemon needs the daemon extra: "
                             "pip install 'hotreload[daemon]'\n")


@pytest.mark.parametrize("command", [["install"], ["uninstall", "--yes"]])
def test_db_without_psycopg_is_one_line(command: list[str], tmp_path: Path) -> None:
    result = cli_without(("psycopg",), "db", *command, "--dsn", "postgresql://u@127.0.0.1:1/x",
                         cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == ("error: hotreload db needs the daemon extra: "
                             "pip install 'hotreload[daemon]'\n")


def test_the_base_install_serves_pods_and_the_other_commands(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("db:\n  pool_size: 5\n")
    result = cli_without(DAEMON_EXTRA, "validate", "settings.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "ok: settings.yaml (1 key)\n", "")
    result = cli_without(DAEMON_EXTRA, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "daemon" in result.stdout, result.stderr
    result = run_without(DAEMON_EXTRA, """
        import hotreload, hotreload.cli._register, hotreload.daemon.status
        from hotreload.cli import cli
        from hotreload.cli._register import register
        register(cli)
        for name in hotreload.__all__:
            getattr(hotreload, name)
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in HIDDEN)
        assert not loaded, loaded
        print("ok")
    """)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


@pytest.mark.parametrize("missing", [("starlette",), ("fastapi", "starlette")])
def test_the_fastapi_integration_without_its_extra_is_one_clear_error(
        missing: tuple[str, ...]) -> None:
    result = run_without(missing, "import hotreload.integrations.fastapi")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("ImportError: hotreload.integrations.fastapi needs the fastapi extra: "
                    "pip install 'hotreload[fastapi]'")
    assert "During handling" not in result.stderr  # raised from None: one error, not two


def test_the_fastapi_router_without_fastapi_says_which_extra() -> None:
    result = run_without(("fastapi",), """
        from hotreload.integrations.fastapi import HotReload
        hr = HotReload("redis://127.0.0.1:1/0")
        try:
            hr.router()
        except ImportError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("hotreload.integrations.fastapi needs the fastapi extra: "
                             "pip install 'hotreload[fastapi]'\n")


def test_pods_import_no_framework() -> None:
    result = run_without(("fastapi", "starlette"), "import hotreload, hotreload.cache")
    assert result.returncode == 0, result.stderr
