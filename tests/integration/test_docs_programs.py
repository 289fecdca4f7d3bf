"""The complete programs of the docs (```python title="name.py" blocks) run as written, against
the real Redis (or, where they say so, the memory transport), each with a key prefix of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, delete_keys

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

PROGRAMS = [(page, m[1], m[2]) for page in sorted(DOCS.glob("*.md"))
            for m in re.finditer(r'^```python title="([^"]+\.py)"\n(.*?)^```$',
                                 page.read_text(encoding="utf-8"), flags=re.M | re.S)]
#: What each program must print (its last lines).
EXPECTED = {
    "quickstart.py": ["v1: 250 req/s"],
    "fastapi_try.py": ["v1: multiplier 1.5"],
}


def test_every_program_has_its_expectation() -> None:
    assert {name for _, name, _ in PROGRAMS} == set(EXPECTED)


@pytest.mark.parametrize(("page", "name", "code"), PROGRAMS, ids=[n for _, n, _ in PROGRAMS])
def test_docs_program_runs(page: Path, name: str, code: str, tmp_path: Path) -> None:
    prefix = f"docs-{uuid.uuid4().hex[:10]}"
    script = tmp_path / name
    script.write_text(code.replace("redis://127.0.0.1:6379/0", REDIS_URL), encoding="utf-8")
    try:
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, timeout=45,
                                capture_output=True, text=True,
                                env={**os.environ, "HOTRELOAD_PREFIX": prefix})
    finally:
        delete_keys(f"{prefix}:*")
    assert result.returncode == 0, f"{page.name}: {name}\n{result.stdout}{result.stderr}"
    assert result.stdout.splitlines()[-len(EXPECTED[name]):] == EXPECTED[name]
