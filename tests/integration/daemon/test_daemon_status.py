"""``hotreload status`` of a real daemon: each source once, with its true state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import WriteConfig, async_wait_for

from hotreload.daemon.core import Daemon, describe_daemon, read_daemon_status
from hotreload.daemon.status import write_status

pytestmark = pytest.mark.integration


async def test_a_healthy_file_source_shows_once_as_running(
    tmp_path: Path, uid: str, write_config: WriteConfig, running: Any,
) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("a: 1\n")
    bad.write_text("b: 1\n")
    _, config = write_config(sources={"files": [
        {"path": str(good), "namespace": f"good-{uid}"},
        {"path": str(bad), "namespace": f"bad-{uid}"}]})
    daemon = running(Daemon(config, leader=None))

    async def status() -> dict[str, Any]:
        await write_status(daemon.transport, daemon.status_name, daemon.status())
        (doc,) = await read_daemon_status(config)  # the document `hotreload status` reads
        return doc

    await async_wait_for(lambda: len(daemon.reconciler.versions) == 2, 10, "both published")
    doc = await status()
    assert doc["sources"] == {"files": {"running": True, "last_error": None, "rejections": {}}}
    lines = [line for line in describe_daemon(doc) if line.startswith("  source ")]
    assert lines == ["  source files: running"]

    bad.write_text("b: [\n")
    await async_wait_for(lambda: daemon.status()["sources"]["files"]["last_error"], 10,
                         "the rejection")
    doc = await status()
    assert list(doc["sources"]) == ["files"]
    files = doc["sources"]["files"]
    assert files["running"] is True
    assert files["rejections"] == {"yaml": 1}
    assert files["last_error"]["detail"].startswith(f"{bad}:2:1: invalid YAML")
    (line,) = [line for line in describe_daemon(doc) if line.startswith("  source ")]
    assert line.startswith(f"  source files: running, rejections yaml=1; last error (yaml): {bad}:")

    good.write_text("a: 2\n")  # another file's good read does not hide the bad one
    await async_wait_for(lambda: daemon.reconciler.versions.get(f"good-{uid}") == 2, 10,
                         "the good save")
    assert (await status())["sources"]["files"]["last_error"]["reason"] == "yaml"
    bad.write_text("b: 2\n")
    await async_wait_for(lambda: daemon.reconciler.versions.get(f"bad-{uid}") == 2, 10,
                         "the fix")
    assert (await status())["sources"]["files"] == {"running": True, "last_error": None,
                                                    "rejections": {"yaml": 1}}


def test_a_name_no_source_claims_is_not_called_not_running() -> None:
    doc = {"host": "h", "pid": 1, "sources": {"custom:x": {"running": None, "rejections": {}}}}
    assert "  source custom:x: state unknown" in describe_daemon(doc)
