"""hotreload.integrations.fastapi with FastAPI's TestClient, on the memory transport.

The app runs on the TestClient's own event loop (another thread); the test publishes from its
thread through another client of the same memory server, as another process would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from hotreload import AsyncTwoLevelCache, HotReloadError, SettingsChange, StartTimeout
from hotreload.integrations.fastapi import HotReload
from hotreload.publisher import AsyncPublisher, PublishResult
from hotreload.transport import MemoryServer, MemoryTransport
from tests.conftest import wait_until
from tests.unit.memory_fixtures import config


class DB(pydantic.BaseModel):
    host: str = "localhost"
    password: str = "hunter2"


class Settings(pydantic.BaseModel):
    multiplier: float = 1.0
    db: DB = DB()


def publish(server: MemoryServer, changes: dict[str, Any]) -> PublishResult:
    async def go() -> PublishResult:
        async with AsyncPublisher(config(), transport=MemoryTransport(server)) as pub:
            return await pub.publish(changes)
    return asyncio.run(go())


def make_app(server: MemoryServer, **kw: Any) -> tuple[FastAPI, HotReload[Settings]]:
    hr = HotReload(config(), model=Settings, transport=MemoryTransport(server),
                   start_timeout=5, **kw)
    app = FastAPI(lifespan=hr.lifespan)
    app.include_router(hr.router())

    @app.get("/price")
    async def price(settings: Settings = Depends(hr.settings)) -> dict[str, float]:
        return {"price": 10 * settings.multiplier}

    return app, hr


def test_the_dependency_serves_the_current_settings() -> None:
    server = MemoryServer()
    app, hr = make_app(server)
    with TestClient(app) as client:
        assert client.get("/price").json() == {"price": 10.0}
        assert isinstance(hr.settings(), Settings)
        result = publish(server, {"multiplier": 2.5})
        wait_until(lambda: client.get("/price").json() == {"price": 25.0}, timeout=5,
                   what="the new multiplier served")
        assert hr.subscriber.version == result.version


def test_the_settings_route_shows_state_and_masks_secrets() -> None:
    server = MemoryServer()
    publish(server, {"db.host": "db.internal", "db.password": "s3cret",
                     "extra": {"dsn": "postgresql://app:pw@db/app"}})
    app, _ = make_app(server)
    with TestClient(app) as client:
        body = client.get("/settings").json()
        assert client.get("/settings").headers["cache-control"] == "no-store"
    assert body["namespace"] == "app" and body["version"] == 1
    assert body["epoch"] and body["received_version"] == 1
    assert body["link"] == "up" and body["last_error"] is None
    assert body["settings"]["db"] == {"host": "db.internal", "password": "***"}
    assert "s3cret" not in str(body)
    assert set(body) >= {"service", "instance"}


def test_the_settings_route_is_read_only_and_can_hide_the_settings() -> None:
    server = MemoryServer()
    hr = HotReload(config(), transport=MemoryTransport(server), start_timeout=5)
    app = FastAPI(lifespan=hr.lifespan)
    app.include_router(hr.router("/_hotreload", show_settings=False))
    with TestClient(app) as client:
        assert "settings" not in client.get("/_hotreload").json()
        assert client.post("/_hotreload").status_code == 405
        assert client.put("/_hotreload").status_code == 405


def test_without_a_model_the_settings_are_a_mapping() -> None:
    server = MemoryServer()
    publish(server, {"a.b": 1})
    hr = HotReload(config(), transport=MemoryTransport(server), start_timeout=5)
    app = FastAPI(lifespan=hr.lifespan)

    @app.get("/b")
    async def b(settings: Any = Depends(hr.settings)) -> int:
        return int(settings["a"]["b"])

    with TestClient(app) as client:
        assert client.get("/b").json() == 1


def test_caches_and_listeners_live_with_the_app() -> None:
    server = MemoryServer()
    hr = HotReload(config(), model=Settings, transport=MemoryTransport(server), start_timeout=5)
    users = hr.cache("users", ttl=30)
    seen: list[int] = []

    @hr.on_change(keys=["multiplier"])
    def changed(change: SettingsChange) -> None:
        seen.append(change.version)

    app = FastAPI(lifespan=hr.lifespan)
    loads: list[str] = []

    @app.get("/user/{uid}")
    async def user(uid: str, cache: AsyncTwoLevelCache = Depends(users)) -> Any:
        async def load(key: str) -> dict[str, str]:
            loads.append(key)
            return {"id": key}
        return await cache.get(f"user:{uid}", load)

    with TestClient(app) as client:
        assert users.cache.name == "users" and users.cache.subscriber is hr.subscriber
        wait_until(lambda: users.cache.trusted, timeout=5, what="the cache trusted")
        assert client.get("/user/7").json() == {"id": "user:7"}
        assert client.get("/user/7").json() == {"id": "user:7"}
        assert loads == ["user:7"]
        result = publish(server, {"multiplier": 3})
        wait_until(lambda: seen == [result.version], timeout=5, what="the listener called")
        subscriber = hr.subscriber
    assert not subscriber.connected
    with pytest.raises(HotReloadError, match="not running"):
        _ = users.cache
    with pytest.raises(HotReloadError, match="not running"):
        hr.settings()
    assert server.keys("*presence*") == []  # closed: its presence record removed


def test_the_app_starts_again_with_a_new_subscriber() -> None:
    server = MemoryServer()
    app, hr = make_app(server)
    with TestClient(app):
        first = hr.subscriber
    publish(server, {"multiplier": 2})
    with TestClient(app) as client:
        assert hr.subscriber is not first
        assert client.get("/price").json() == {"price": 20.0}


def test_a_startup_that_cannot_load_settings_fails_the_app() -> None:
    server = MemoryServer()
    server.fail_next(1_000_000)  # every connection refused
    app, hr = make_app(server)
    hr.start_timeout = 0.5
    with pytest.raises(StartTimeout, match=r"not ready after 0\.5s.*refused"), TestClient(app):
        pass
    with pytest.raises(HotReloadError, match="not running"):
        _ = hr.subscriber


def test_before_startup_the_route_says_503() -> None:
    server = MemoryServer()
    hr = HotReload(config(), transport=MemoryTransport(server))
    app = FastAPI()  # its lifespan is not hotreload's
    app.include_router(hr.router())
    with TestClient(app) as client:
        response = client.get("/settings")
    assert response.status_code == 503
    assert response.json() == {"error": "hotreload is not running"}


def test_one_app_at_a_time() -> None:
    server = MemoryServer()
    hr = HotReload(config(), transport=MemoryTransport(server), start_timeout=5)

    async def run() -> None:
        async with hr.lifespan():
            with pytest.raises(HotReloadError, match="already running"):
                async with hr.lifespan():
                    pass
            assert hr.subscriber.version == 0

    asyncio.run(run())


def test_a_cache_name_is_declared_once() -> None:
    hr = HotReload(config(), transport=MemoryTransport(MemoryServer()))
    hr.cache("users")
    with pytest.raises(HotReloadError, match="declared twice"):
        hr.cache("users")


def test_a_plain_starlette_app_mounts_the_route() -> None:
    server = MemoryServer()
    publish(server, {"multiplier": 4})
    hr = HotReload(config(), model=Settings, transport=MemoryTransport(server), start_timeout=5)
    app = Starlette(routes=[hr.settings_route("/settings")], lifespan=hr.lifespan)
    with TestClient(app) as client:
        body = client.get("/settings").json()
        assert app.state.hotreload is hr
    assert body["settings"]["multiplier"] == 4 and body["version"] == 1


def test_the_link_state_shows_an_outage() -> None:
    server = MemoryServer()
    app, _ = make_app(server)
    with TestClient(app) as client:
        server.freeze()  # a black hole: the heartbeat deadline notices
        wait_until(lambda: client.get("/settings").json()["link"] == "down", timeout=5,
                   what="the link shown as down")
        server.thaw()
        wait_until(lambda: client.get("/settings").json()["link"] == "up", timeout=5,
                   what="the link up again")
