"""This daemon's role: leader (publishes) or standby (waits for the leader lock).

`Election.run` drives a `LeaderLike` lock: acquire (standby meanwhile), then ``on_lead`` (the
daemon reconciles every source and opens its publishing gate), then wait until the lock is lost,
``on_follow`` (close the gate) and start over. Without a lock the daemon simply leads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from .._backoff import Backoff
from ..errors import describe_error
from .setup import LeaderLike

log = logging.getLogger("hotreload.daemon")

Role = Literal["leader", "standby"]
#: After a failed attempt, an acquire still pending after this long counts as "standby".
STANDBY_GRACE = 1.0


class Election:
    """Tracks ``role`` (None = unknown) and ``error``; `run` until cancelled."""

    def __init__(
        self,
        leader: LeaderLike | None,
        *,
        backoff_max: float,
        on_lead: Callable[[], Awaitable[None]],
        on_follow: Callable[[], None],
        on_change: Callable[[Role | None], None],
    ) -> None:
        self.leader = leader
        self.role: Role | None = None
        self.error: str | None = None
        self._backoff = Backoff(backoff_max)
        self._on_lead = on_lead
        self._on_follow = on_follow
        self._on_change = on_change

    async def run(self) -> None:
        if self.leader is None:
            self.set_role("leader")
            await self._on_lead()
            return
        while True:
            if not await self._acquire(self.leader):
                await asyncio.sleep(self._backoff.next())
                continue
            self._backoff.reset()
            self.set_role("leader")
            await self._on_lead()
            try:
                reason = await self.leader.wait_lost()
            except Exception as exc:
                reason = describe_error(exc)
            self._on_follow()
            log.warning("leadership lost: %s", reason or "lock lost",
                        extra={"action": "leader_lost"})
            self.set_role("standby")

    async def _acquire(self, leader: LeaderLike) -> bool:
        """Wait for the lock; False (role unknown, error logged once) if it cannot be reached."""
        acquiring = asyncio.ensure_future(leader.acquire())
        try:
            if self.error is None:
                self.set_role("standby")
            else:  # the last attempt failed: standby only once this one is waiting for real
                done, _ = await asyncio.wait({acquiring}, timeout=STANDBY_GRACE)
                if not done:
                    self.set_role("standby")
            await acquiring
        except Exception as exc:
            self._failed(describe_error(exc))
            return False
        finally:
            if not acquiring.done():
                acquiring.cancel()
            elif not acquiring.cancelled():
                acquiring.exception()  # retrieved even if we were cancelled meanwhile
        return True

    def _failed(self, error: str) -> None:
        first = self.error is None
        self.error = error
        self.set_role(None)
        if first:
            log.warning("leader lock unreachable, retrying with backoff: %s", error,
                        extra={"action": "leader_error"})
        else:
            log.debug("leader lock still unreachable: %s", error)

    def set_role(self, role: Role | None) -> None:
        """Record a role change (a known role also clears the lock error) and log it."""
        if role is not None:
            self.error = None
        if role == self.role:
            return
        self.role = role
        if role == "leader":
            log.info("leader: publishing", extra={"action": "leader_acquired"})
        elif role == "standby":
            log.info("standby: waiting for the leader lock", extra={"action": "standby"})
        self._on_change(role)
