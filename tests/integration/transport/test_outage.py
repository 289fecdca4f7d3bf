"""`is_outage` on what the Redis transport really raises: a refused connection or a cut link is
an outage; an error reply of a working server (WRONGTYPE) is not."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from hotreload.config import RedisSettings
from hotreload.errors import BackendError
from hotreload.transport import is_outage
from hotreload.transport.redis import RedisTransport
from hotreload.wire.names import keys_for
from tests.conftest import REDIS_URL, delete_keys, unique
from tests.integration.proxy import proxy_to_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> Iterator[str]:
    name = unique("outage")
    yield name
    delete_keys(f"{name}:*")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_refused_connection_is_an_outage() -> None:
    t = RedisTransport(RedisSettings(url=f"redis://127.0.0.1:{closed_port()}/0",  # type: ignore[arg-type]
                                     connect_timeout=1))
    try:
        with pytest.raises(BackendError) as info:
            await t.ping()
        assert is_outage(info.value)
    finally:
        await t.aclose()


async def test_a_cut_link_is_an_outage() -> None:
    with proxy_to_redis() as proxy:
        t = RedisTransport(RedisSettings(url=proxy.url, socket_timeout=0.5,  # type: ignore[arg-type]
                                         connect_timeout=0.5))
        try:
            await t.ping()
            proxy.cut()  # open links reset, new ones refused
            with pytest.raises(BackendError) as info:
                await t.head("app")
            assert is_outage(info.value), repr(info.value.__cause__)
        finally:
            await t.aclose()


async def test_an_error_reply_is_not_an_outage(prefix: str) -> None:
    redis.Redis.from_url(REDIS_URL).set(keys_for("app", prefix).meta, b"not a hash")
    t = RedisTransport(RedisSettings(url=REDIS_URL), prefix=prefix)  # type: ignore[arg-type]
    try:
        with pytest.raises(BackendError, match="WRONGTYPE") as info:
            await t.load_leaves("app")
        assert not is_outage(info.value)
    finally:
        await t.aclose()
