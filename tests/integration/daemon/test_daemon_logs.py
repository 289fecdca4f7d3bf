"""One log line per fact, counted on a real daemon (file source, real Redis)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import WriteConfig, async_wait_for

from hotreload.daemon.core import Daemon

pytestmark = pytest.mark.integration


def actions(caplog: pytest.LogCaptureFixture) -> Counter[str]:
    return Counter(str(r.action) for r in caplog.records if hasattr(r, "action"))


async def test_a_rejected_file_is_one_line_and_its_fix_one_more(
    tmp_path: Path, uid: str, write_config: WriteConfig, running: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hotreload")
    ns = f"app-{uid}"
    file = tmp_path / "settings.yaml"
    file.write_text("a: 1\n")
    _, config = write_config(sources={"files": [{"path": str(file), "namespace": ns}]})
    daemon = running(Daemon(config, leader=None))
    await async_wait_for(lambda: daemon.reconciler.versions.get(ns) == 1, 10, "the publish")
    file.write_text("a: [\n")
    await async_wait_for(lambda: actions(caplog)["rejected"], 10, "the rejection")
    await daemon.reconcile_sources()  # the same bad file read again: nothing new to say
    file.write_text("a: 2\n")
    await async_wait_for(lambda: daemon.reconciler.versions.get(ns) == 2, 10, "the fix")
    counts = actions(caplog)
    assert counts["rejected"] == 1
    assert counts["accepted"] == 1
    assert counts["published"] == 2
    assert counts["started"] == counts["leader_acquired"] == 1
    (rejected,) = [r for r in caplog.records if getattr(r, "action", None) == "rejected"]
    assert rejected.levelno == logging.WARNING
    assert getattr(rejected, "reason", None) == "yaml"
    assert f"{file}:2:1: invalid YAML" in rejected.getMessage()
