"""Integration fixtures: the real Redis (and PostgreSQL). A missing service fails, never skips."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from hotreload import Invalidation
from hotreload.config import HotReloadConfig, build_config
from hotreload.wire import DEFAULT_PREFIX
from tests.conftest import REDIS_URL, delete_keys
from tests.integration.cluster_servers import (
    ClusterServers,
    SentinelServers,
    cluster_servers,
    sentinel_servers,
)

FAST_SUBSCRIBER = {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.5,
                   "version_check_interval": 1.0, "reconnect_backoff_max": 0.5}


@pytest.fixture(scope="session", autouse=True)
def _redis_is_up() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc} (start it: see .ci/run)")


def make_config(url: str = REDIS_URL, protocol: int = 3, **extra: Any) -> HotReloadConfig:
    data: dict[str, Any] = {"redis": {"url": url, "protocol": protocol},
                            "subscriber": dict(FAST_SUBSCRIBER)}
    data.update(extra)
    return build_config(data)


class RecordingHook:
    """A `CacheHook` that records what the subscriber tells it."""

    def __init__(self) -> None:
        self.events: list[Invalidation] = []
        self.trusted: list[bool] = []

    def invalidate(self, event: Invalidation) -> None:
        self.events.append(event)

    def set_trusted(self, trusted: bool) -> None:
        self.trusted.append(trusted)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def resp(request: pytest.FixtureRequest) -> int:
    """Run the test on both RESP2 and RESP3."""
    return int(request.param)


@pytest.fixture
def config(resp: int) -> HotReloadConfig:
    return make_config(protocol=resp)


@pytest.fixture
def raw_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _cleanup_namespace(namespace: str) -> Iterator[None]:
    yield
    delete_keys(f"{DEFAULT_PREFIX}:{{{namespace}}}:*")


@pytest.fixture
async def apub(config: HotReloadConfig, namespace: str) -> AsyncIterator[Any]:
    from hotreload import AsyncPublisher

    async with AsyncPublisher(config, namespace=namespace) as pub:
        yield pub


@pytest.fixture(scope="session")
def _cluster_deployment() -> Iterator[ClusterServers]:
    with cluster_servers() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(_cluster_deployment: ClusterServers) -> ClusterServers:
    """The session's Redis Cluster (three primaries with a replica each), healthy: a node an
    earlier test left down is started again. Tests isolate themselves by prefix."""
    _cluster_deployment.heal()
    return _cluster_deployment


@pytest.fixture(scope="session")
def _sentinel_deployment() -> Iterator[SentinelServers]:
    with sentinel_servers() as deployment:
        yield deployment


@pytest.fixture
def redis_sentinel(_sentinel_deployment: SentinelServers) -> SentinelServers:
    """The session's master, replica and three sentinels, healthy (see `SentinelServers.heal`).
    Tests isolate themselves by prefix."""
    _sentinel_deployment.heal()
    return _sentinel_deployment
