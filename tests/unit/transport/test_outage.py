"""`hotreload.transport.is_outage`: a link that failed (retry later) against a refused command."""

from __future__ import annotations

import pytest
import redis.exceptions

from hotreload.errors import BackendError, ProtocolError
from hotreload.transport import MemoryServer, is_outage


def wrapped(cause: BaseException) -> BackendError:
    try:
        raise BackendError("publishing") from cause
    except BackendError as exc:
        return exc


def test_driver_errors_by_kind() -> None:
    assert is_outage(wrapped(redis.exceptions.ConnectionError("refused")))
    assert is_outage(wrapped(redis.exceptions.TimeoutError("timed out")))
    assert is_outage(wrapped(redis.exceptions.BusyLoadingError("loading")))
    assert is_outage(wrapped(ConnectionResetError("reset")))
    assert is_outage(wrapped(TimeoutError()))
    assert is_outage(redis.exceptions.ConnectionError("refused"))  # unwrapped, as a probe sees
    assert is_outage(OSError("unreachable"))
    assert not is_outage(wrapped(redis.exceptions.ResponseError("WRONGTYPE")))
    assert not is_outage(wrapped(redis.exceptions.ResponseError("OOM command not allowed")))
    assert not is_outage(wrapped(redis.exceptions.ReadOnlyError("READONLY")))
    assert not is_outage(redis.exceptions.ResponseError("WRONGTYPE"))
    assert not is_outage(BackendError("no cause"))
    assert not is_outage(ProtocolError("too big"))
    assert not is_outage(ValueError("a bug"))


async def test_what_the_memory_transport_raises() -> None:
    server = MemoryServer()
    t = server.transport()
    server.fail_next()
    with pytest.raises(BackendError) as info:
        await t.ping()
    assert is_outage(info.value)  # an injected failure is a refused connection
    server.put("hotreload:{app}:meta", b"a string")
    with pytest.raises(BackendError) as info:
        await t.head("app")
    assert not is_outage(info.value)  # WRONGTYPE
    await t.aclose()
    with pytest.raises(BackendError) as info:
        await t.ping()
    assert not is_outage(info.value)  # closed by us: a bug, not an outage
