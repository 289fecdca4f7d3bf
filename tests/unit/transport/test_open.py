"""`open_transport` and what the Redis transport shows of its address (no server needed)."""

from __future__ import annotations

import socket

import pytest

from hotreload.config import HotReloadConfig, RedisSettings, build_config
from hotreload.errors import BackendError, ConfigError
from hotreload.transport import open_transport
from hotreload.transport.redis import RedisTransport


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nobody listens there now


async def test_open_transport_picks_redis_by_scheme() -> None:
    config = HotReloadConfig.from_url("redis://127.0.0.1:6379/0", prefix="pfx")
    t = open_transport(config)
    assert isinstance(t, RedisTransport)
    assert t.prefix == "pfx"
    await t.aclose()


def test_open_transport_rejects_an_unknown_scheme() -> None:
    config = HotReloadConfig.from_url("memcached://user:s3cret@host:1/0")
    with pytest.raises(ConfigError, match="unsupported scheme 'memcached'") as info:
        open_transport(config)
    assert "s3cret" not in str(info.value)


async def test_addresses_and_errors_hold_no_password() -> None:
    url = f"redis://user:s3cret@127.0.0.1:{closed_port()}/0"
    t = RedisTransport(RedisSettings(url=url, connect_timeout=1))  # type: ignore[arg-type]
    assert "s3cret" not in t.describe() and "***" in t.describe()
    with pytest.raises(BackendError) as info:
        await t.ping()
    assert "s3cret" not in str(info.value)
    await t.aclose()


async def test_open_transport_picks_a_cluster_or_a_sentinel_without_connecting() -> None:
    from hotreload.transport.cluster import ClusterTransport
    from hotreload.transport.sentinel import SentinelTransport

    nowhere = f"127.0.0.1:{closed_port()}"
    config = build_config({"prefix": "pfx", "redis": {"cluster": {"nodes": [nowhere]},
                                                      "password": "s3cret"}})
    t = open_transport(config)
    assert isinstance(t, ClusterTransport) and t.prefix == "pfx" and t.read_from_replicas
    assert t.describe() == f"redis+cluster://:***@{nowhere}/"
    with pytest.raises(BackendError) as info:
        await t.ping()
    assert "s3cret" not in str(info.value)
    await t.aclose()

    t = open_transport(HotReloadConfig.from_url(f"redis+cluster://{nowhere}/"))
    assert isinstance(t, ClusterTransport)
    await t.aclose()

    config = build_config({"redis": {"sentinel": {"master": "m", "nodes": [nowhere],
                                                  "sentinel_password": "t0p"}}})
    t = open_transport(config)
    assert isinstance(t, SentinelTransport)
    assert t.describe() == f"redis+sentinel://{nowhere}/m/0"
    with pytest.raises(BackendError, match="No master found") as info:
        await t.ping()
    assert "t0p" not in str(info.value)
    await t.aclose()
