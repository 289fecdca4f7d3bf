"""The daemon's status documents through a transport (the memory one: no server needed)."""

from __future__ import annotations

import os

import pytest

from hotreload.config import HotReloadConfig
from hotreload.daemon.status import (
    delete_status,
    read_daemon_status,
    status_name,
    write_status,
)
from hotreload.errors import BackendError
from hotreload.transport import MemoryServer


async def test_written_documents_are_read_back_sorted() -> None:
    server = MemoryServer()
    t = server.transport(prefix="pfx")
    config = HotReloadConfig(prefix="pfx")
    assert await write_status(t, status_name("b", 2), {"host": "b", "pid": 2, "role": None})
    assert await write_status(t, status_name("a", 10), {"host": "a", "pid": 10})
    assert await write_status(t, status_name("a", 9), {"host": "a", "pid": 9, "t": {1}})
    await t.write_status("junk:1", b"not json", 30)
    await t.write_status("list:1", b"[1]", 30)
    docs = await read_daemon_status(config, transport=t)
    assert [(d["host"], d["pid"]) for d in docs] == [("a", 9), ("a", 10), ("b", 2)]
    assert docs[0]["t"] == "{1}"  # what JSON cannot hold is shown as text
    await delete_status(t, status_name("a", 10))
    assert len(await read_daemon_status(config, transport=t)) == 2
    assert server.keys("pfx:{daemons}:daemon:*") == [
        "pfx:{daemons}:daemon:a:9", "pfx:{daemons}:daemon:b:2", "pfx:{daemons}:daemon:junk:1",
        "pfx:{daemons}:daemon:list:1"]


async def test_an_unreachable_server_loses_one_write_and_nothing_else() -> None:
    server = MemoryServer()
    t = server.transport()
    server.fail_next(2)
    assert not await write_status(t, "h:1", {"host": "h", "pid": 1})  # logged, not raised
    await delete_status(t, "h:1")  # the same
    assert await write_status(t, "h:1", {"host": "h", "pid": 1})
    server.fail_next()
    with pytest.raises(BackendError):  # `hotreload status` says why it cannot read
        await read_daemon_status(HotReloadConfig(), transport=t)


def test_the_name_is_host_and_pid() -> None:
    assert status_name("h", 7) == "h:7"
    assert status_name().endswith(f":{os.getpid()}")
