"""The README's code runs as written (against the real Redis)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from hotreload.cli import cli
from hotreload.cli._register import register

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def _run_readme_example(namespace: str) -> None:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[0]
    code = code.replace('namespace="app"', f'namespace="{namespace}"')
    module = types.ModuleType("readme_example")
    sys.modules[module.__name__] = module  # pydantic resolves annotations through it
    try:
        exec(compile(code, str(README), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


def test_readme_python_example_runs(namespace: str, capsys: pytest.CaptureFixture[str]) -> None:
    _run_readme_example(namespace)
    assert ": pool 10 -> 20" in capsys.readouterr().out


def test_readme_python_example_runs_again(namespace: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The second run publishes the same values: a no-op whose version can be waited for."""
    _run_readme_example(namespace)
    _run_readme_example(namespace)
    assert capsys.readouterr().out.count(": pool 10 -> 20") == 1


def test_readme_commands_exist() -> None:
    register(cli)
    text = README.read_text()
    used = set(re.findall(r"^hotreload ([a-z]+)", text, flags=re.M))
    used |= set(re.findall(r"&& hotreload ([a-z]+)", text))
    assert used <= set(cli.commands), used - set(cli.commands)
