"""The cache example runs against the real Redis and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_cache_rows_example() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "cache_rows.py")],
                          capture_output=True, text=True, timeout=90, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every pod reads" in done.stdout
    assert done.stdout.count("Ada Lovelace") == 3


def test_l1_timeit_script_runs() -> None:
    """docs/l1_timeit.py (the numbers in docs/cache.md) keeps working, with tiny sizes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "l1_timeit.py"), "--number",
                           "2000", "--repeat", "1"],
                          capture_output=True, text=True, timeout=90, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TwoLevelCache.get (L1 hit, sync)" in done.stdout
