"""Election: roles, callbacks and logging against fake leader locks (no services)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from hotreload.daemon.election import Election, Role


class FlakyLeader:
    """``acquire`` fails ``failures`` times, then waits until ``grant``ed."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.granted = asyncio.Event()
        self.lost = asyncio.Event()
        self.is_leader = False

    async def acquire(self) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("connection refused")
        await self.granted.wait()
        self.granted.clear()
        self.is_leader = True

    async def wait_lost(self) -> str | None:
        await self.lost.wait()
        self.lost.clear()
        self.is_leader = False
        return "session terminated"

    async def release(self) -> None:
        self.is_leader = False


async def until(cond: Any, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 - polling a condition with a deadline
            await asyncio.sleep(0.005)


def make(leader: FlakyLeader | None) -> tuple[Election, list[str]]:
    events: list[str] = []

    async def lead() -> None:
        events.append("lead")

    def changed(role: Role | None) -> None:
        events.append(f"role={role}")

    election = Election(leader, backoff_max=0.05, on_lead=lead,
                        on_follow=lambda: events.append("follow"), on_change=changed)
    return election, events


async def test_without_a_lock_it_leads() -> None:
    election, events = make(None)
    await election.run()
    assert election.role == "leader"
    assert events == ["role=leader", "lead"]


async def test_standby_leader_lost_and_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hotreload")
    leader = FlakyLeader()
    election, events = make(leader)
    task = asyncio.create_task(election.run())
    try:
        await until(lambda: election.role == "standby")
        leader.granted.set()
        await until(lambda: election.role == "leader" and "lead" in events)
        leader.lost.set()
        await until(lambda: election.role == "standby")
        leader.granted.set()
        await until(lambda: events.count("lead") == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert events == ["role=standby", "role=leader", "lead", "follow", "role=standby",
                      "role=leader", "lead"]
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert actions == ["standby", "leader_acquired", "leader_lost", "standby",
                       "leader_acquired"]
    (lost,) = [r for r in caplog.records if getattr(r, "action", None) == "leader_lost"]
    assert lost.getMessage() == "leadership lost: session terminated"  # the lock's reason


async def test_unreachable_lock_is_unknown_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hotreload")
    leader = FlakyLeader(failures=4)
    election, _ = make(leader)
    task = asyncio.create_task(election.run())
    try:
        await until(lambda: leader.failures == 0)
        assert election.role is None
        assert election.error == "connection refused"
        await until(lambda: election.role == "standby")  # waiting for real after the grace
        assert election.error is None
        leader.granted.set()
        await until(lambda: election.role == "leader")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    actions = [getattr(r, "action", None) for r in caplog.records if hasattr(r, "action")]
    assert actions == ["standby", "leader_error", "standby", "leader_acquired"]
