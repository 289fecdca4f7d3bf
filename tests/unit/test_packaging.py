"""Packaging: the README's install line gives the test suite all it needs, CI uses that very
line, and the MIT licence the metadata claims ships with the package."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _extra(name: str) -> set[str]:
    """The distribution names an extra installs, following ``hotreload[...]`` self-references."""
    out: set[str] = set()
    for spec in PYPROJECT["project"]["optional-dependencies"][name]:
        req = Requirement(spec)
        if req.name == PYPROJECT["project"]["name"]:
            for inner in req.extras:
                out |= _extra(inner)
        else:
            out.add(req.name)
    return out


def _readme_install_args() -> list[str]:
    line = re.search(r"pip install ([^&\n]+)", README)
    assert line is not None, "the README has no pip install line"
    return shlex.split(line.group(1))


def test_dev_extra_brings_everything_the_test_suite_needs() -> None:
    dev = _extra("dev")
    # the suite runs the daemon, the benchmarks' smoke test and the demo, and lint-imports
    for other in ("daemon", "bench", "demo", "fastapi"):
        assert _extra(other) <= dev, (other, _extra(other) - dev)
    assert "import-linter" in dev
    # the integration's tests, the docs site, the examples' checks
    assert {"httpx", "uvicorn", "mkdocs-material", "kubernetes-validate", "promql-parser"} <= dev


def test_ci_installs_with_exactly_the_readmes_line() -> None:
    readme = _readme_install_args()
    assert readme == ["-e", ".[dev]"]
    installs = [shlex.split(m) for m in re.findall(r"^python -m pip install (.+?)(?:\s+#.*)?$",
                                                    CI, flags=re.M)]
    project = [[a for a in args if a != "-q"] for args in installs if "--upgrade" not in args]
    assert project == [readme]


def test_ci_runs_the_readmes_test_command() -> None:
    assert "\npython -m pytest   #" in README
    lines = CI.rstrip().splitlines()
    assert "python -m pytest" in lines  # the README's test command, as written
    # then the soak's short mode (docs/guarantees.md)
    assert lines.index("python -m pytest") < len(lines) - 1
    assert lines[-1].startswith("python -m benchmarks.soak --short")


def test_the_mit_licence_ships_with_the_package() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 hotreload developers" in text
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]  # in the wheel and the sdist
