"""Leader election with a session-level advisory lock, against the real server."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from _pg_helpers import (
    PG_URL,
    BlackHoleProxy,
    _free_port,
    make_settings,
    terminate,
)

from hotreload.daemon.leader import LeaderLock, server_session_limits, server_silence_limit
from hotreload.errors import BackendError

pytestmark = pytest.mark.integration

TAKEOVER_LIMIT = 5.0  # the promise: a standby takes over within 5 s

CHILD = """
import asyncio, sys
from pydantic import SecretStr
from hotreload.config import PostgresSettings
from hotreload.daemon.leader import LeaderLock

async def main():
    lock = LeaderLock(PostgresSettings(dsn=SecretStr(sys.argv[1]),
                                       leader_lock_key=int(sys.argv[2])))
    await lock.acquire()
    print("leader", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def key() -> int:
    return uuid.uuid4().int % 2**62


@pytest.fixture
async def locks(key: int) -> AsyncIterator[list[LeaderLock]]:
    made: list[LeaderLock] = []
    yield made
    for lock in made:
        await lock.release()


def new_lock(locks: list[LeaderLock], key: int, url: str = PG_URL, **kw: float) -> LeaderLock:
    lock = LeaderLock(make_settings(url, leader_lock_key=key, **kw))
    locks.append(lock)
    return lock


async def assert_still_waiting(task: asyncio.Task[None], seconds: float = 1.5) -> None:
    done, _ = await asyncio.wait({task}, timeout=seconds)
    assert not done, "a second process became leader while the first held the lock"


async def test_only_one_leads_then_standby_takes_over_on_terminate(
    locks: list[LeaderLock], key: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "hotreload.daemon.leader")
    a, b = new_lock(locks, key), new_lock(locks, key)
    await asyncio.wait_for(a.acquire(), 10)
    assert a.is_leader
    standby = asyncio.create_task(b.acquire())
    await assert_still_waiting(standby)
    assert not b.is_leader
    lost: asyncio.Task[str | None] = asyncio.create_task(a.wait_lost())
    t0 = time.monotonic()
    assert await terminate(a.settings) == 1
    await asyncio.wait_for(standby, TAKEOVER_LIMIT)
    assert time.monotonic() - t0 < TAKEOVER_LIMIT
    await asyncio.wait_for(lost, TAKEOVER_LIMIT)
    assert b.is_leader
    assert not a.is_leader
    assert lost.result()  # why, for the election's log line
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert "leader_acquired" not in actions and "leader_lost" not in actions  # Election logs them


async def test_release_hands_over(locks: list[LeaderLock], key: int) -> None:
    a, b = new_lock(locks, key), new_lock(locks, key)
    await a.acquire()
    standby = asyncio.create_task(b.acquire())
    await assert_still_waiting(standby, 0.7)
    await a.release()
    assert not a.is_leader
    await asyncio.wait_for(standby, TAKEOVER_LIMIT)
    assert b.is_leader


async def test_standby_takes_over_after_sigkill(locks: list[LeaderLock], key: int) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, PG_URL, str(key), env=env, stdout=asyncio.subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line.strip() == b"leader"
        b = new_lock(locks, key)
        standby = asyncio.create_task(b.acquire())
        await assert_still_waiting(standby, 1.0)
        t0 = time.monotonic()
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(standby, TAKEOVER_LIMIT)
        assert time.monotonic() - t0 < TAKEOVER_LIMIT
        assert b.is_leader
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


async def test_black_holed_leader_notices_loss(locks: list[LeaderLock], key: int) -> None:
    proxy = BlackHoleProxy()
    await proxy.start()
    try:
        a = new_lock(locks, key, proxy.url(), leader_check_interval=0.3, heartbeat_timeout=1.0)
        await a.acquire()
        proxy.freeze()
        await asyncio.wait_for(a.wait_lost(), 10)
        assert not a.is_leader
    finally:
        await proxy.close()


async def test_wait_lost_returns_at_once_when_not_leader(locks: list[LeaderLock],
                                                         key: int) -> None:
    await asyncio.wait_for(new_lock(locks, key).wait_lost(), 1)


async def test_standby_takes_over_from_black_holed_leader(locks: list[LeaderLock],
                                                         key: int) -> None:
    # The server must end the silent leader's session itself: no FIN ever reaches it.
    proxy = BlackHoleProxy()
    await proxy.start()
    try:
        fast = {"leader_check_interval": 0.5, "heartbeat_timeout": 2.0}
        a = new_lock(locks, key, proxy.url(), **fast)
        b = new_lock(locks, key, **fast)
        await a.acquire()
        lost = asyncio.create_task(a.wait_lost())
        standby = asyncio.create_task(b.acquire())
        await assert_still_waiting(standby, 1.0)
        t0 = time.monotonic()
        proxy.freeze()
        await asyncio.wait_for(standby, 15)
        took = time.monotonic() - t0
        assert b.is_leader
        # never two leaders: the old one stepped down before the server freed the lock
        await asyncio.wait_for(lost, 1)
        assert not a.is_leader
        assert took >= server_silence_limit(b.settings) - 0.5
    finally:
        await proxy.close()


def test_server_session_limits_follow_the_version() -> None:
    s = make_settings(PG_URL, leader_check_interval=1.0, heartbeat_timeout=6.0)
    assert server_silence_limit(s) == 13.0
    new = dict(server_session_limits(s, 150004))
    assert new["idle_session_timeout"] == "13000ms"
    assert new["tcp_keepalives_idle"] == "13"
    assert new["tcp_user_timeout"] == "15000ms"
    old = dict(server_session_limits(s, 110000))
    assert "idle_session_timeout" not in old and "tcp_user_timeout" not in old


async def test_unreachable_server_raises(locks: list[LeaderLock], key: int) -> None:
    lock = new_lock(locks, key, f"postgresql://postgres@127.0.0.1:{_free_port()}/x")
    with pytest.raises(BackendError, match="cannot connect"):
        await asyncio.wait_for(lock.acquire(), 10)
    assert not lock.is_leader
