"""The import-linter contracts of pyproject.toml (``[tool.importlinter]``), one test each:
cli > daemon | integrations > cache > publisher | subscriber > transport > wire; wire imports only
hotreload.errors; what pods import needs none of the daemon extra; only the CLI imports the
daemon. `.ci/run` runs ``lint-imports`` too; this keeps ``pytest`` alone honest."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
    "tool"]["importlinter"]["contracts"]

pytestmark = pytest.mark.layers


@pytest.fixture(scope="module")
def report() -> str:
    """One run of ``lint-imports`` over every contract (the graph is built once)."""
    exe = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(exe), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True,
                            text=True, timeout=50)
    assert "Contracts:" in result.stdout, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c["id"] for c in CONTRACTS])
def test_import_contract(report: str, contract: dict[str, str]) -> None:
    name = contract["name"]
    status = re.search(rf"^{re.escape(name)} (KEPT|BROKEN)", report, flags=re.M)
    assert status is not None, report
    if status[1] == "BROKEN":
        _, _, broken = report.partition(f"\n{name}\n")
        pytest.fail(f"import contract broken: {name}\n{broken.split(chr(10) * 3)[0]}")
