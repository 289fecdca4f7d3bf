"""The console's JSON API on a real `Daemon` (real Redis, a file source), with subscribers in
their own processes: laggards (a model that rejects, a stopped process), masking, propagation,
the event stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from console_helpers import SECRETS, Subscribers, subscribers, write_settings
from daemon_helpers import WriteConfig, async_wait_for

from hotreload.config import HotReloadConfig
from hotreload.daemon.core import Daemon
from hotreload.publisher import AsyncPublisher

pytestmark = pytest.mark.integration

__all__ = ["subscribers"]  # the fixture, imported for the tests below

FAST = {"version_check_interval": 0.3, "heartbeat_interval": 0.5, "heartbeat_timeout": 1.5}


@dataclass
class Setup:
    daemon: Daemon
    config: HotReloadConfig
    config_path: Path
    settings: Path
    ns: str
    extra: str
    http: aiohttp.ClientSession
    texts: list[str]

    async def get(self, path: str, status: int = 200) -> Any:
        async with self.http.get(path) as resp:
            text = await resp.text()
            assert resp.status == status, (path, resp.status, text)
        self.texts.append(text)
        return json.loads(text)

    async def row(self) -> dict[str, Any]:
        doc = await self.get("/api/namespaces")
        (row,) = [r for r in doc["namespaces"] if r["namespace"] == self.ns]
        return row

    async def until(self, cond: Callable[[], Awaitable[Any]], what: str,
                    within: float = 15.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            result = await cond()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def setup(tmp_path: Path, uid: str, write_config: WriteConfig,
                running: Any) -> AsyncIterator[Setup]:
    ns, extra = f"app-{uid}", f"ops-{uid}"
    settings = tmp_path / "settings.yaml"
    write_settings(settings, 10)
    path, config = write_config(
        subscriber=FAST, sources={"files": [{"path": str(settings), "namespace": ns}]},
        daemon={"http": "127.0.0.1:0", "console": {"namespaces": [extra],
                                                   "poll_interval": 0.1}})
    daemon = running(Daemon(config, leader=None))
    await async_wait_for(lambda: daemon.reconciler.versions.get(ns) == 1, 15, "v1 published")
    assert daemon.http is not None
    await async_wait_for(lambda: daemon.http.port != 0, 5, "the HTTP server")  # type: ignore[union-attr]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{daemon.http.port}") as http:
        yield Setup(daemon, config, path, settings, ns, extra, http, [])


def assert_no_secret(texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


async def test_namespaces_instances_laggards_masking_and_propagation(
        setup: Setup, subscribers: Subscribers) -> None:
    s = setup
    async with AsyncPublisher(s.config, namespace=s.extra) as pub:
        await pub.publish({"mode": "fast", "service": {"token": SECRETS[1]}})
    api = [await asyncio.to_thread(subscribers.start, s.config_path, s.ns, "api")
           for _ in range(2)]
    worker = await asyncio.to_thread(subscribers.start, s.config_path, s.ns, "worker",
                                     max_limit=50)

    async def three_current() -> bool:
        row = await s.row()
        return row["instances"] == 3 and row["behind"] == 0
    await s.until(three_current, "three live instances on v1")

    write_settings(s.settings, 100, password=SECRETS[2])  # v2: the worker's model rejects it

    async def worker_behind() -> dict[str, Any] | None:
        row = await s.row()
        ok = (row["version"] == 2 and row["behind"] == 1 and row["rejected"] == 1
              and row["instances"] == 3)
        return row if ok else None
    row = await s.until(worker_behind, "the worker behind v2")
    assert row["link_down"] == 0 and row["canary"] is None
    assert row["fed_by"] == f"file:{s.settings}"
    assert row["last_change"]["version"] == 2 and row["last_change"]["kind"] == "config"
    assert row["last_change"]["source"] == f"file:{s.settings}"
    assert row["last_change"]["ts"] > 0 and row["last_change"]["origin"]
    assert row["epoch"] and row["exists"] and row["error"] is None

    overview = await s.get("/api/namespaces")
    assert [r["namespace"] for r in overview["namespaces"]] == sorted([s.ns, s.extra])
    (ops,) = [r for r in overview["namespaces"] if r["namespace"] == s.extra]
    assert (ops["version"], ops["instances"], ops["behind"], ops["fed_by"]) == (1, 0, 0, None)

    async def api_on_v2() -> dict[str, Any] | None:
        doc = await s.get(f"/api/namespaces/{s.ns}")
        versions = sorted(i["version"] for i in doc["instances"])
        return doc if versions == [1, 2, 2] else None
    detail = await s.until(api_on_v2, "both api instances on v2")
    first, *rest = detail["instances"]  # laggards first
    assert first["instance"] == worker.instance and first["service"] == "worker"
    assert (first["state"], first["lag"], first["behind"], first["version"]) == (
        "behind", 1, True, 1)
    assert first["rejected"]["version"] == 2 and "limit" in first["rejected"]["reason"]
    assert first["link"] == "up" and first["host"] and first["pid"] > 0
    assert first["age"] >= 0 and first["seen"] >= 0
    assert {i["instance"] for i in rest} == {p.instance for p in api}
    assert all((i["state"], i["lag"], i["rejected"]) == ("ok", 0, None) for i in rest)
    assert detail["rollout"] == {"version": 2, "instances": 3, "applied": 2, "behind": 1,
                                 "complete": False}

    shown = {item["key"]: (item["value"], item["secret"]) for item in detail["settings"]}
    assert shown == {"limit": (100, False), "db.host": ("db.internal", False),
                     "db.password": ("***", True), "api_token": ("***", True),
                     "feature.enabled": (True, False), "feature.ratio": (0.25, False)}
    (v2, v1) = detail["history"][:2]
    assert (v2["version"], v1["version"]) == (2, 1)
    texts = sorted(c["text"] for c in v2["changes"])
    assert texts == ["db.password: changed (secret)", "limit: 10 -> 100"]
    (pw,) = [c for c in v2["changes"] if c["key"] == "db.password"]
    assert (pw["old"], pw["new"], pw["secret"], pw["op"]) == ("***", "***", True, "changed")

    prop = await s.get(f"/api/namespaces/{s.ns}/propagation")
    assert prop["version"] == 2
    top = prop["versions"][0]
    assert top["version"] == 2 and top["complete"] is False
    assert top["pending"] == [worker.instance]
    applied = {a["instance"]: a for a in top["applied"]}
    assert set(applied) == {p.instance for p in api}
    assert all(0 <= a["latency"] < 10 and not a["started"] for a in applied.values())
    assert top["latency"]["max"] == max(a["latency"] for a in applied.values())
    v1_prop = prop["versions"][1]
    assert v1_prop["version"] == 1 and v1_prop["complete"] is True
    assert all(a["started"] for a in v1_prop["applied"])  # loaded at start: not propagation
    assert v1_prop["latency"] is None
    assert sum(m["count"] for m in prop["events_per_minute"]) == 2
    assert len(prop["events_per_minute"]) == 30

    await s.get(f"/api/namespaces/{s.extra}")
    await s.get(f"/api/namespaces/{s.extra}/propagation")
    missing = await s.get("/api/namespaces/nope", status=404)
    assert "not shown" in missing["error"]
    assert_no_secret(s.texts)


async def test_a_stopped_process_is_listed_behind(setup: Setup,
                                                  subscribers: Subscribers) -> None:
    s = setup
    running_one = await asyncio.to_thread(subscribers.start, s.config_path, s.ns, "api")
    slow = await asyncio.to_thread(  # refreshes its presence every 4 s (expires after 12 s)
        subscribers.start, s.config_path, s.ns, "batch",
        env={"HOTRELOAD_SUBSCRIBER__VERSION_CHECK_INTERVAL": "4"})

    async def slow_just_refreshed() -> bool:
        doc = await s.get(f"/api/namespaces/{s.ns}")
        seen = {i["instance"]: i["seen"] for i in doc["instances"]}
        return running_one.instance in seen and seen.get(slow.instance, 9) < 0.5
    await s.until(slow_just_refreshed, "both instances, the slow one just refreshed")
    slow.pause()
    write_settings(s.settings, 20)

    async def slow_behind() -> dict[str, Any] | None:
        doc = await s.get(f"/api/namespaces/{s.ns}")
        states = [(i["instance"], i["state"], i["version"]) for i in doc["instances"]]
        want = [(slow.instance, "behind", 1), (running_one.instance, "ok", 2)]
        return doc if states == want else None
    doc = await s.until(slow_behind, "the stopped process listed behind", within=10)
    assert doc["instances"][0]["lag"] == 1
    assert doc["rollout"]["complete"] is False
    assert (await s.row())["behind"] == 1


async def test_the_event_stream_announces_a_publish(setup: Setup) -> None:
    s = setup
    async with s.http.get("/api/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")

        async def next_event() -> tuple[str, dict[str, Any]]:
            name, data = "", ""
            while True:
                line = (await resp.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and name:
                    return name, json.loads(data)

        name, hello = await asyncio.wait_for(next_event(), 5)
        assert name == "hello"
        async with AsyncPublisher(s.config, namespace=s.extra) as pub:
            await pub.publish({"x": 1})
            began = time.monotonic()
        while True:
            name, change = await asyncio.wait_for(next_event(), 5)
            if name == "change" and s.extra in change["namespaces"]:
                break
        assert time.monotonic() - began < 2
        assert change["generation"] > hello["generation"]


@pytest.mark.parametrize("enabled", [None, True])
async def test_a_console_on_a_non_loopback_address_must_be_asked_for(
        enabled: bool | None, write_config: WriteConfig, running: Any) -> None:
    console: dict[str, Any] = {} if enabled is None else {"enabled": enabled}
    _, config = write_config(daemon={"http": "0.0.0.0:0", "console": console})
    daemon = running(Daemon(config, leader=None))
    assert (daemon.console is not None) is bool(enabled)
    assert daemon.http is not None
    await async_wait_for(lambda: daemon.http.port != 0, 5, "the HTTP server")  # type: ignore[union-attr]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{daemon.http.port}") as http:
        async with http.get("/healthz") as resp:
            assert resp.status == 200
        for path in ("/", "/api/namespaces"):
            async with http.get(path) as resp:
                assert resp.status == (200 if enabled else 404), path
