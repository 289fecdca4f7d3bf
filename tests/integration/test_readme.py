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
SUBSCRIBER_DOC = README.parent / "docs" / "subscriber.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def run_example(code: str, origin: Path, namespace: str) -> None:
    """Execute a documented example as a module, in this test's own namespace."""
    code = code.replace('namespace="app"', f'namespace="{namespace}"')
    module = types.ModuleType("doc_example")
    sys.modules[module.__name__] = module  # pydantic resolves annotations through it
    try:
        exec(compile(code, str(origin), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


def test_readme_python_example_runs(namespace: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_example(python_blocks(README)[0], README, namespace)
    assert ": pool 10 -> 20" in capsys.readouterr().out


def test_readme_python_example_runs_again(namespace: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The second run publishes the same values: a no-op whose version can be waited for."""
    run_example(python_blocks(README)[0], README, namespace)
    run_example(python_blocks(README)[0], README, namespace)
    assert capsys.readouterr().out.count(": pool 10 -> 20") == 1


def test_subscriber_doc_blocks_compile_and_the_async_example_runs(
        namespace: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(SUBSCRIBER_DOC)
    for block in blocks:  # the fragments at least stay valid Python
        compile(block, str(SUBSCRIBER_DOC), "exec")
    (example,) = [b for b in blocks if "asyncio.run(" in b]  # the complete program
    assert "async with AsyncSubscriber(" in example
    assert "await sub.start(" in example and "await sub.aclose()" in example
    run_example(example, SUBSCRIBER_DOC, namespace)
    assert capsys.readouterr().out.splitlines() == ["v1: pool_size 20", "v1: pool_size 20"]


def test_readme_commands_exist() -> None:
    register(cli)
    text = README.read_text()
    used = set(re.findall(r"^hotreload ([a-z]+)", text, flags=re.M))
    used |= set(re.findall(r"&& hotreload ([a-z]+)", text))
    assert used <= set(cli.commands), used - set(cli.commands)
