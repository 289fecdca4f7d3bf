"""Last known good at cold start: the cache file (hotreload/subscriber/cachefile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotreload.errors import StartTimeout
from hotreload.subscriber.cachefile import read_cache_file
from tests.unit.memory_fixtures import Pods, eventually


async def test_the_file_follows_what_is_applied(pods: Pods, tmp_path: Path) -> None:
    path = tmp_path / "app.lkg"
    pub = pods.publisher()
    await pub.publish({"db": {"pool": 1}})
    sub = await pods.subscriber(cache_file=path)
    for i in range(2, 6):
        last = await pub.publish({"db.pool": i})
    await sub.wait_for_version(last.version, 3)
    await eventually(lambda: path.exists() and read_cache_file(path, "app").version == 5,
                     what="the file rewritten")
    lkg = read_cache_file(path, "app")
    assert lkg.settings == {"db": {"pool": 5}} and lkg.epoch == sub.epoch


async def test_redis_down_at_start_starts_from_the_file_then_catches_up(
        pods: Pods, tmp_path: Path) -> None:
    path = tmp_path / "app.lkg"
    pub = pods.publisher()
    await pub.publish({"n": 1})
    first = await pods.subscriber(cache_file=path)
    await first.aclose()  # writes the file on the way out
    assert read_cache_file(path, "app").version == 1
    pods.server.freeze()  # Redis unreachable during a deploy
    sub = await pods.subscriber(cache_file=path)
    assert sub.get("n") == 1 and sub.link_state in ("down", "stale")
    assert sub.server_note is not None and "cache file" in sub.server_note
    pods.server.thaw()
    result = await pub.publish({"n": 2})
    await sub.wait_for_version(result.version, 5)
    await eventually(lambda: sub.link_state == "up", what="resynced")


async def test_a_damaged_file_is_ignored_and_without_redis_start_fails_clearly(
        pods: Pods, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "app.lkg"
    path.write_bytes(b"0" * 64 + b'\n{"format": "hotreload-lkg/1"}')
    pods.server.freeze()
    sub = await pods.subscriber(cache_file=path, start=False)
    with pytest.raises(StartTimeout, match="not ready"):
        await sub.start(timeout=1.5)
    assert sum("ignoring the cache file" in r.getMessage() for r in caplog.records) == 1
