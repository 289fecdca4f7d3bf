"""The console without services: the masking rule, the JSON documents, the polling `Console` on
the memory transport, and the HTTP side (routes, token, loopback guard, headers, shutdown)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hotreload.config import DaemonSettings, build_config
from hotreload.daemon.http import Console, HttpServer, console_enabled, create_app, views
from hotreload.daemon.http.guard import is_loopback
from hotreload.daemon.http.page import ASSETS, _read
from hotreload.masking import MASK, SecretMatcher, scrub
from hotreload.wire import MISSING, Change, Envelope, Head
from hotreload.wire.presence import PresenceRecord, decode_presence
from tests.unit.memory_fixtures import Pods, config, pods, server
from tests.unit.test_daemon_health import FakeDaemon

__all__ = ["pods", "server"]

M = SecretMatcher()

# --------------------------------------------------------------------------- masking


def test_default_secret_keys() -> None:
    for key in ("db.password", "DB.Password", "api_token", "stripe.secret_key", "aws.apiKey",
                "smtp.passwd", "gcp.credentials"):
        assert M.is_secret(key), key
    for key in ("db.host", "limit", "feature.enabled", "tokenizer_model", "cache.key"):
        assert not M.is_secret(key), key
    assert SecretMatcher(["*.key"]).is_secret("cache.KEY")  # extra patterns from config


def test_values_are_masked_by_their_own_path() -> None:
    value = {"host": "h", "password": "p", "nested": [{"api_key": "k", "n": 1}]}
    assert M.value("db", value) == {"host": "h", "password": MASK,
                                    "nested": [{"api_key": MASK, "n": 1}]}
    assert M.value("db.password", {"a": 1}) == MASK  # a secret key hides its whole value
    assert SecretMatcher(["*.pin"]).value("card.pin", 1234) == MASK
    assert SecretMatcher([]).value("db.password", "p") == MASK  # the word rule always applies
    assert M.secret_texts({"db": value, "x.token": 42, "y.secret": True}) == ["p", "k", "42"]


def test_scrub_masks_known_secret_values_in_text() -> None:
    assert scrub("bad value 'hunter22' for db.password", ["hunter22", "p"]) == (
        "bad value '***' for db.password")
    assert scrub("no secrets here", ["abc"]) == "no secrets here"  # shorter than 4: kept


# --------------------------------------------------------------------------- views


def test_change_lines() -> None:
    def text(change: Change) -> str:
        return str(views.change_json(change, M)["text"])

    assert text(Change("set", "limit", 10, 20)) == "limit: 10 -> 20"
    assert text(Change("set", "limit", MISSING, 20)) == "limit: added 20"
    assert text(Change("delete", "limit", 20)) == "limit: deleted (was 20)"
    assert text(Change("set", "db.password", "a", "b")) == "db.password: changed (secret)"
    assert text(Change("set", "db.password", MISSING, "b")) == "db.password: added (secret)"
    assert text(Change("delete", "api_token", "b")) == "api_token: deleted (was (secret))"
    doc = views.change_json(Change("set", "db", {"password": "a"}, {"password": "b"}), M)
    assert doc == {"op": "changed", "key": "db", "old": {"password": MASK},
                   "new": {"password": MASK}, "secret": True,
                   "text": 'db: {"password": "***"} -> {"password": "***"}'}
    assert views.change_json(Change("set", "x", 1, 2), M)["secret"] is False


def record(instance: str, version: int, *, epoch: str | None = "e1", link: Any = "up",
           rejected: dict[str, Any] | None = None, service: str = "api",
           applied_at: float = 0.0, started_at: float = 100.0) -> PresenceRecord:
    return PresenceRecord(instance=instance, service=service, version=version, epoch=epoch,
                          received_version=version, link=link, rejected=rejected,
                          started_at=started_at, refreshed_at=started_at + 1, host="h", pid=1,
                          applied_at=applied_at)


HEAD = Head("app", "e1", 5, "0" * 64, 1, 1.0, None)


def test_instances_laggards_first() -> None:
    records = [record("ok", 5), record("down", 5, link="down"), record("far", 2),
               record("near", 4), record("epoch", 9, epoch="e0"),
               record("rej", 5, rejected={"version": 6, "reason": "limit 'hunter22' > 50"})]
    rows = views.instances_json(records, HEAD, now=200.0, secrets=["hunter22"])
    assert [(r["instance"], r["state"], r["lag"]) for r in rows] == [
        ("epoch", "other-epoch", None), ("far", "behind", 3), ("near", "behind", 1),
        ("rej", "rejected", 0), ("down", "down", 0), ("ok", "ok", 0)]
    assert rows[3]["rejected"] == {"version": 6, "reason": "limit '***' > 50"}
    assert rows[0]["age"] == 100.0 and rows[0]["seen"] == 99.0
    assert views.rollout_json(records, HEAD) == {"version": 5, "instances": 6, "applied": 3,
                                                 "behind": 3, "complete": False}
    summary = views.summary_json("app", HEAD, None, records, M, fed_by=None, error=None)
    assert (summary["behind"], summary["rejected"], summary["link_down"]) == (3, 1, 1)


def event(version: int, ts: float, epoch: str = "e1") -> Envelope:
    return Envelope(namespace="app", kind="config", epoch=epoch, version=version, ts=ts,
                    source="files", origin="o")


def test_propagation_per_version() -> None:
    events = [event(3, 3000.0), event(4, 3010.0), event(5, 3020.0), event(1, 10.0, "e0")]
    applied = {4: {"a": (3010.5, 100.0), "late": (3100.0, 3050.0)},
               5: {"a": (3020.25, 100.0)}}
    records = [record("a", 5), record("b", 4), record("late", 5, started_at=3050.0)]
    doc = views.propagation_json(HEAD, events, applied, records, now=3030.0)
    v5, v4, v3 = doc["versions"]  # newest first, other epochs left out
    assert (v5["version"], v5["complete"], v5["pending"]) == (5, False, ["b"])
    assert v5["applied"] == [{"instance": "a", "at": 3020.25, "latency": 0.25,
                              "started": False}]
    assert v5["skipped"] == [] and v4["skipped"] == []  # b runs v4 but reported no time
    assert v4["complete"] is True and v4["latency"] == {"min": 0.5, "median": 0.5, "max": 0.5}
    assert [a["started"] for a in v4["applied"]] == [False, True]
    assert v3["applied"] == [] and v3["skipped"] == ["a", "b", "late"]
    minutes = doc["events_per_minute"]
    assert len(minutes) == views.EVENT_MINUTES and minutes[-1]["minute"] == 3000
    assert [m["count"] for m in minutes[-1:]] == [3]
    assert sum(m["count"] for m in minutes) == 3  # the event at 10.0 is older than 30 min


# --------------------------------------------------------------------------- the Console


async def test_console_polls_heads_and_presence(pods: Pods) -> None:
    cfg = config(daemon={"console": {"namespaces": ["extra"], "poll_interval": 0.05}})
    pub = pods.publisher(namespace="app")
    await pub.publish({"limit": 1, "db": {"password": "hunter22"}})
    console = Console(cfg, pods.transport(), fed=lambda: {"app": "files"})
    assert list(console.namespaces()) == ["app", "extra"]
    sub = await pods.subscriber(namespace="app", service="web")
    await sub.transport.write_presence("app", sub.instance, sub._presence().encode(), ttl=5)
    await console.poll()
    gen = console.generation
    overview = console.overview()
    app, extra = overview["namespaces"]
    assert (app["version"], app["instances"], app["behind"], app["fed_by"]) == (1, 1, 0, "files")
    assert (extra["exists"], extra["version"], extra["fed_by"]) == (False, 0, None)
    assert "hunter22" not in json.dumps(console.namespace("app"))

    await console.poll()
    assert console.generation == gen  # nothing moved: no change, no wake-up
    assert await console.wait_change(gen, 0.01) is None

    await pub.publish({"limit": 2})
    await sub.wait_for_version(2)
    await sub.transport.write_presence("app", sub.instance, sub._presence().encode(), ttl=5)
    await console.poll()
    assert await console.wait_change(gen, 0.01) == ["app"]
    (inst,) = console.namespace("app")["instances"]
    assert (inst["version"], inst["service"], inst["state"]) == (2, "web", "ok")
    (v2, *_) = console.propagation("app")["versions"]
    assert v2["version"] == 2 and [a["instance"] for a in v2["applied"]] == [sub.instance]


async def test_console_shows_a_read_error_and_recovers(pods: Pods) -> None:
    pub = pods.publisher(namespace="app")
    await pub.publish({"a": 1})
    console = Console(config(), pods.transport(), fed=lambda: {"app": None})
    await console.poll()
    gen = console.generation
    pods.server.fail_next(2)
    await console.poll()
    (row,) = console.overview()["namespaces"]
    assert row["error"] and row["version"] == 1  # what was read stays shown
    assert console.generation == gen + 1
    await console.poll()
    (row,) = console.overview()["namespaces"]
    assert row["error"] is None and row["version"] == 1


async def test_fresh_waits_for_a_poll(pods: Pods) -> None:
    console = Console(config(daemon={"console": {"poll_interval": 0.05}}), pods.transport(),
                      fed=lambda: {"app": None})
    task = asyncio.create_task(console.run())
    try:
        await console.fresh()
        assert console.generation == 1  # the first poll saw the namespace
    finally:
        task.cancel()


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
async def client(pods: Pods) -> AsyncIterator[TestClient[Any, Any]]:
    cfg = config(daemon={"console": {"token": "s3cret-token", "poll_interval": 0.05}})
    console = Console(cfg, pods.transport(), fed=lambda: {"app": None})
    async with TestClient(TestServer(create_app(FakeDaemon(), console))) as c:
        yield c


BEARER = {"Authorization": "Bearer s3cret-token"}


async def test_the_token_guards_the_console_not_the_probes(
        client: TestClient[Any, Any]) -> None:
    for path in ("/", "/console.js", "/api/namespaces", "/api/namespaces/app", "/api/events"):
        resp = await client.get(path)
        assert resp.status == 401, path
        assert resp.headers.getall("WWW-Authenticate") == [
            'Bearer realm="hotreload console"', 'Basic realm="hotreload console", charset="UTF-8"']
        assert "s3cret" not in await resp.text()
    assert (await client.get("/api/namespaces",
                             headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.get("/api/namespaces", headers=BEARER)).status == 200
    basic = base64.b64encode(b"anyone:s3cret-token").decode()
    assert (await client.get("/", headers={"Authorization": f"Basic {basic}"})).status == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert "Content-Security-Policy" not in resp.headers


async def test_the_page_and_its_headers(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/", headers=BEARER)
    page = await resp.text()
    assert resp.content_type == "text/html"
    assert '<script src="console.js"' in page and "http" not in page.replace(
        "http-equiv", "")  # nothing from the network
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Frame-Options"] == "DENY"
    js = await client.get("/console.js", headers=BEARER)
    assert js.content_type == "text/javascript" and "EventSource" in await js.text()
    css = await client.get("/console.css", headers=BEARER)
    assert css.content_type == "text/css" and "prefers-color-scheme: dark" in await css.text()
    assets = [_read(name) for name, _ in ASSETS.values()]
    assert sum(map(len, assets)) < 40_000  # small
    assert not [a for a in assets if b"https:" in a or b"//cdn" in a]  # nothing to fetch
    missing = await client.get("/api/namespaces/nope", headers=BEARER)
    assert missing.status == 404 and "not shown" in (await missing.json())["error"]


async def test_a_loopback_console_answers_loopback_names_only(
        client: TestClient[Any, Any]) -> None:
    for host in ("evil.example", "evil.example:9464", "10.0.0.1"):
        resp = await client.get("/api/namespaces", headers={**BEARER, "Host": host})
        assert resp.status == 403, host
    for host in ("localhost:9464", "127.0.0.1", "[::1]:9464", "app.localhost"):
        resp = await client.get("/api/namespaces", headers={**BEARER, "Host": host})
        assert resp.status == 200, host
    assert (await client.get("/healthz", headers={"Host": "evil.example"})).status == 200


async def test_without_a_console_only_the_probes_are_served() -> None:
    async with TestClient(TestServer(create_app(FakeDaemon()))) as c:
        for path in ("/", "/api/namespaces", "/api/events"):
            assert (await c.get(path)).status == 404, path


async def test_stopping_the_server_ends_the_event_streams(pods: Pods) -> None:
    import aiohttp

    console = Console(config(), pods.transport(), fed=lambda: {"app": None})
    server = HttpServer("127.0.0.1:0", FakeDaemon(), console)
    await server.start()
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"http://{server.address}/api/events")
        assert b"event: hello" in await resp.content.readuntil(b"\n\n")
        began = time.monotonic()
        await server.aclose()
        assert time.monotonic() - began < 0.2
        assert await resp.content.read() == b""
        resp.release()


# --------------------------------------------------------------------------- enabling


@pytest.mark.parametrize(("http", "enabled", "on"), [
    ("127.0.0.1:9464", None, True), ("localhost:0", None, True), ("[::1]:9464", None, True),
    ("0.0.0.0:9464", None, False), ("10.1.2.3:9464", None, False),
    ("my-host:9464", None, False), ("0.0.0.0:9464", True, True),
    ("127.0.0.1:9464", False, False), ("off", True, False),
])
def test_when_the_console_is_on(http: str, enabled: bool | None, on: bool) -> None:
    settings = DaemonSettings.model_validate({"http": http, "console": {"enabled": enabled}})
    assert console_enabled(settings) is on


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("LOCALHOST")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_console_settings() -> None:
    cfg = build_config({})
    console = cfg.daemon.console
    assert (console.enabled, console.token, console.namespaces) == (None, None, [])
    assert console.secret_keys == [] and console.poll_interval == 0.5
    assert build_config({"daemon": {"console": {"token": ""}}}).daemon.console.token is None
    token = build_config({"daemon": {"console": {"token": "zq9-token"}}}).daemon.console.token
    assert token is not None and "zq9" not in repr(token)


def test_console_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTRELOAD_DAEMON__CONSOLE__TOKEN", "from-env")
    monkeypatch.setenv("HOTRELOAD_DAEMON__CONSOLE__NAMESPACES", '["a", "b"]')
    console = build_config({}).daemon.console
    assert console.token is not None and console.token.get_secret_value() == "from-env"
    assert console.namespaces == ["a", "b"]


def test_a_bad_console_namespace_is_a_config_error() -> None:
    from hotreload.errors import ConfigError

    with pytest.raises(ConfigError, match=r"daemon\.console\.namespaces"):
        build_config({"daemon": {"console": {"namespaces": ["no spaces"]}}})


# --------------------------------------------------------------------------- presence


async def test_presence_reports_when_the_version_was_applied(pods: Pods) -> None:
    pub = pods.publisher(namespace="app")
    await pub.publish({"a": 1})
    sub = await pods.subscriber(namespace="app")
    first = sub._presence()
    assert first.version == 1 and first.applied_at > 0
    before = time.time()
    await pub.publish({"a": 2})
    await sub.wait_for_version(2)
    second = sub._presence()
    assert second.version == 2 and before <= second.applied_at <= time.time()
    decoded = decode_presence(second.encode())
    assert decoded is not None and decoded.applied_at == second.applied_at
    old = json.loads(second.encode())
    del old["applied_at"]  # a record of an older subscriber
    assert decode_presence(json.dumps(old)).applied_at == 0.0  # type: ignore[union-attr]
    assert sub._presence().applied_at == second.applied_at  # unchanged until the next version
