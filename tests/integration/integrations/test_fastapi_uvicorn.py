"""The FastAPI integration in a real uvicorn process against the real Redis, under concurrent
requests while settings change: no request fails, no client sees a value go backwards, and each
new value is served within 100 ms of `publish` returning (measured from the publisher's return to
the first response, of any client, that carries the new value)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from hotreload import AsyncPublisher
from tests.conftest import REDIS_URL
from tests.integration.conftest import make_config
from tests.integration.servers_http import uvicorn

pytestmark = pytest.mark.integration

APP = "tests.integration.integrations._uvicorn_app:app"
#: How many settings changes the test publishes, and how many clients read meanwhile.
CHANGES = 25
CLIENTS = 3
#: The promise: the new value is served this soon after publish returns.
FRESH_WITHIN = 0.100
#: The bound of the wait for one new value (far beyond FRESH_WITHIN: a miss is measured).
WAIT_LIMIT = 2.0


class FirstSeen:
    """When each value was first served (perf_counter), to any client."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self._news = asyncio.Event()

    def saw(self, value: int, at: float) -> None:
        self.at.setdefault(value, at)
        self._news.set()  # wakes `until` after every response

    async def until(self, cond: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_LIMIT):
            while not cond():
                self._news.clear()
                await self._news.wait()

    async def wait_for(self, value: int) -> float:
        await self.until(lambda: value in self.at)
        return self.at[value]


async def read_until_stopped(client: httpx.AsyncClient, stop: asyncio.Event, first: FirstSeen,
                             seen: list[int], failures: list[str]) -> None:
    """Sequential GETs: each must be served (200) and never go backwards."""
    last = -1
    while not stop.is_set():
        try:
            response = await client.get("/counter")
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        arrived = time.perf_counter()
        if response.status_code != 200:
            failures.append(f"HTTP {response.status_code}: {response.text}")
            continue
        value = int(response.json()["counter"])
        if value < last:
            failures.append(f"went backwards: {last} -> {value}")
        last = value
        seen.append(value)
        first.saw(value, arrived)


async def test_uvicorn_serves_each_change_within_100ms_and_fails_no_request(
        namespace: str) -> None:
    async with AsyncPublisher(make_config(), namespace=namespace) as pub:
        await pub.publish({"counter": 0})
        with uvicorn(APP, {"REDIS_URL": REDIS_URL, "APP_NAMESPACE": namespace}) as served:
            clients = [httpx.AsyncClient(base_url=served.url, timeout=5) for _ in range(CLIENTS)]
            try:
                state = (await clients[0].get("/settings")).json()
                assert (state["namespace"], state["version"], state["link"]) == (
                    namespace, 1, "up")
                stop, first = asyncio.Event(), FirstSeen()
                seen: list[list[int]] = [[] for _ in clients]
                failures: list[str] = []
                tasks = [asyncio.create_task(read_until_stopped(c, stop, first, s, failures))
                         for c, s in zip(clients, seen, strict=True)]
                # warm: every client connected and served (first requests build routes)
                await first.until(lambda: all(len(s) >= 5 for s in seen))
                latencies = []
                for value in range(1, CHANGES + 1):
                    await pub.publish({"counter": value})
                    published_at = time.perf_counter()
                    served_at = await first.wait_for(value)
                    latencies.append(max(0.0, served_at - published_at))
                stop.set()
                await asyncio.gather(*tasks)
            finally:
                for client in clients:
                    await client.aclose()
        print(f"latencies: max {max(latencies) * 1000:.1f} ms, "
              f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms; "
              f"{sum(len(s) for s in seen)} requests")
        assert failures == []
        assert all(s and s[-1] == CHANGES for s in seen), [s[-1:] for s in seen]
        assert all(len(set(s)) > 1 for s in seen), "a client did not read while values changed"
        slow = [f"{i + 1}: {t * 1000:.1f} ms" for i, t in enumerate(latencies)
                if t > FRESH_WITHIN]
        assert slow == [], f"served later than {FRESH_WITHIN * 1000:.0f} ms: {slow}"
        assert not any("Traceback" in line for line in served.lines), served.lines
