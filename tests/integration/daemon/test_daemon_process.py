"""The daemon as a process: publishing, SIGTERM, health endpoints, status in Redis."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import (
    SpawnDaemon,
    WriteConfig,
    async_wait_for,
    free_port,
    http_get,
)

from hotreload.daemon.core import read_daemon_status
from hotreload.publisher import AsyncPublisher

pytestmark = pytest.mark.integration


async def get(port: int, path: str) -> tuple[int, bytes]:
    return await asyncio.to_thread(http_get, port, path)


async def test_a_file_change_reaches_a_subscriber_and_sigterm_exits_0(
    tmp_path: Path, uid: str, write_config: WriteConfig, spawn: SpawnDaemon,
    subscriber_factory: Any,
) -> None:
    ns = f"app-{uid}"
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"db": {"pool": 5}}))
    path, config = write_config()
    sub = await subscriber_factory(config, ns)
    daemon = spawn(path, file=file, namespace=ns)
    await async_wait_for(lambda: sub.as_dict() == {"db": {"pool": 5}}, 20, "the first publish")
    first = sub.version
    file.write_text(json.dumps({"db": {"pool": 20}, "debug": True}))
    await async_wait_for(lambda: sub.as_dict() == {"db": {"pool": 20}, "debug": True}, 10,
                         "the edit")
    assert sub.version == first + 1
    code, took = daemon.terminate()
    assert code == 0, daemon.text()
    assert took < 2.0
    actions = daemon.actions()
    for action in ("started", "leader_acquired", "published", "stopping"):
        assert action in actions, actions


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_the_cli_daemon_stops_cleanly_on_a_signal(
    write_config: WriteConfig, spawn: SpawnDaemon, sig: signal.Signals,
) -> None:
    port = free_port()
    path, _ = write_config(daemon={"http": f"127.0.0.1:{port}"})
    daemon = spawn(path, cli=True)
    await async_wait_for(lambda: http_get(port, "/healthz")[0] == 200, 20, "the daemon's HTTP")
    began = asyncio.get_running_loop().time()
    daemon.proc.send_signal(sig)
    code = await asyncio.to_thread(daemon.proc.wait, 10)
    assert code == 0, daemon.text()
    assert asyncio.get_running_loop().time() - began < 2.0
    records = daemon.logs()
    assert [r.get("action") for r in records if r.get("action") == "stopping"] == ["stopping"]
    assert all("level" in r and "logger" in r and "message" in r for r in records)


async def test_health_endpoints_and_metrics(
    tmp_path: Path, uid: str, write_config: WriteConfig, spawn: SpawnDaemon,
) -> None:
    ns = f"app-{uid}"
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"a": 1}))
    port = free_port()
    path, config = write_config(daemon={"http": f"127.0.0.1:{port}"})
    daemon = spawn(path, file=file, namespace=ns)
    await async_wait_for(lambda: http_get(port, "/readyz")[0] == 200, 20, "readiness")
    assert await get(port, "/healthz") == (200, b"ok\n")
    _, body = await get(port, "/readyz")
    assert json.loads(body) == {"ready": True, "role": "leader", "reason": None}
    file.write_text("{not json")
    async with AsyncPublisher(config) as pub:
        await async_wait_for(lambda: b'reason="json"' in http_get(port, "/metrics")[1], 10,
                             "the rejection in the metrics")
        assert await pub.version(ns) == 1
    _, body = await get(port, "/metrics")
    text = body.decode()
    for line in (
        'hotreload_events_published_total{kind="config",source="poll:settings.json"} 1.0',
        'hotreload_rejections_total{reason="json",source="poll:settings.json"} 1.0',
        f'hotreload_namespace_version{{namespace="{ns}"}} 1.0',
        "hotreload_leader 1.0",
        "hotreload_redis_up 1.0",
        "hotreload_redis_reconnects_total 0.0",
        'hotreload_source_up{source="poll:settings.json"} 0.0',
        "hotreload_publish_latency_seconds_count 1.0",
        "hotreload_publish_errors_total 0.0",
    ):
        assert line in text, line
    assert (await get(port, "/nope"))[0] == 404
    assert daemon.terminate()[0] == 0


async def test_status_is_written_to_redis_and_read_back(
    tmp_path: Path, uid: str, write_config: WriteConfig, spawn: SpawnDaemon,
) -> None:
    ns = f"app-{uid}"
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"a": 1}))
    path, config = write_config()
    daemon = spawn(path, file=file, namespace=ns)

    async def mine() -> dict[str, Any] | None:
        found = [d for d in await read_daemon_status(config) if d["pid"] == daemon.pid]
        return found[0] if found else None

    async def until(cond: Any, what: str) -> dict[str, Any]:
        for _ in range(1000):
            doc = await mine()
            if doc is not None and cond(doc):
                return doc
            await asyncio.sleep(0.02)
        raise AssertionError(f"status never showed {what}: {await mine()}")

    doc = await until(lambda d: d["versions"].get(ns) == 1, "the published version")
    assert doc["role"] == "leader"
    assert doc["redis"] == "up"
    assert doc["sources"]["poll:settings.json"]["running"] is True
    assert doc["sources"]["poll:settings.json"]["last_error"] is None
    file.write_text("[1, 2]")
    doc = await until(lambda d: d["sources"]["poll:settings.json"]["last_error"], "the error")
    source = doc["sources"]["poll:settings.json"]
    assert source["last_error"]["reason"] == "type"
    assert "not a JSON object" in source["last_error"]["detail"]
    assert source["rejections"] == {"type": 1}
    assert daemon.terminate()[0] == 0
    assert await mine() is None  # removed on a clean stop


async def test_the_cli_daemon_imports_a_schema_next_to_its_config_file(
    tmp_path: Path, uid: str, write_config: WriteConfig, spawn: SpawnDaemon,
    subscriber_factory: Any,
) -> None:
    """The README's daemon example: ``schema: "myschema:Settings"`` beside config.yaml, the
    daemon started from another directory."""
    ns = f"app-{uid}"
    conf = tmp_path / "conf"
    conf.mkdir()
    module = f"schema_{uid}"
    (conf / f"{module}.py").write_text(
        "from pydantic import BaseModel, Field\n\n"
        "class Settings(BaseModel):\n    pool: int = Field(ge=1, le=500)\n")
    settings = conf / "settings.yaml"
    settings.write_text("pool: 5\n")
    path, config = write_config("conf/config.yaml", sources={"files": [
        {"path": str(settings), "namespace": ns, "schema": f"{module}:Settings"}]})
    sub = await subscriber_factory(config, ns)
    daemon = spawn(path, cli=True)  # its cwd is tmp_path, not conf/
    await async_wait_for(lambda: sub.as_dict() == {"pool": 5} or daemon.proc.poll() is not None,
                         20, "the first publish")
    assert daemon.proc.poll() is None, daemon.text()
    settings.write_text("pool: 501\n")  # the schema says no
    await async_wait_for(lambda: "rejected" in daemon.actions(), 20, "the rejection")
    settings.write_text("pool: 6\n")
    await async_wait_for(lambda: sub.as_dict() == {"pool": 6}, 20, "the next good save")
    async with AsyncPublisher(config, namespace=ns) as pub:
        assert [e.value_changes()[0].new for e in await pub.history()] == [5, 6]
    assert daemon.terminate()[0] == 0
