"""Dead links on real Redis, at every phase of a subscriber's work (docs/guarantees.md).

A fault proxy (benchmarks/faultproxy.py) sits between one pod (a subscriber and its cache) and
Redis; the rest of the cluster (a publisher, another pod) talks to Redis directly. The fault is
a *freeze* (every byte of every link held back, connections stay open) or a *black hole*
(every byte dropped, new connections accepted and swallowed), started at a chosen phase: idle,
around the backstop's version check, during a replay, during a full load, during a cache read
of L2. Each time:

* the subscriber marks its link down and its caches stop trusting L1 within
  ``DETECTION_BOUND`` = heartbeat_interval + heartbeat_timeout + the reader's 0.25 s poll, plus
  0.5 s of scheduling slack;
* ``cache.get`` never waits on the dead link longer than the L2 deadline (`L2_TIMEOUT`): the
  loader serves;
* a row another pod invalidated meanwhile is never served from L1 once the link is distrusted;
* after the fault ends, the subscriber and the cache converge (the new settings, the
  invalidation, L1 trusted again) within ``HEAL_BOUND``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from benchmarks.faultproxy import FaultProxy
from hotreload import Publisher, Subscriber
from hotreload.cache import AsyncTwoLevelCache, TwoLevelCache
from hotreload.cache.core import L2_TIMEOUT
from hotreload.config import HotReloadConfig
from hotreload.publisher import AsyncPublisher
from hotreload.subscriber import AsyncSubscriber
from hotreload.subscriber.core import POLL_SECONDS
from hotreload.transport import _scripts as S
from tests.conftest import REDIS_URL, await_until, wait_until
from tests.integration.conftest import RecordingHook, make_config

pytestmark = pytest.mark.integration

TIMINGS = {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.5, "version_check_interval": 1.0,
           "reconnect_backoff_max": 0.5, "command_timeout": 1.0}
#: heartbeat_interval + heartbeat_timeout + the reader's poll + scheduling slack
DETECTION_BOUND = 0.5 + 1.5 + POLL_SECONDS + 0.5
#: *H* of docs/guarantees.md: after the fault ends, a reconnect attempt in flight gives up (the
#: poll + heartbeat_timeout), the reader's and the syncer's backoffs (2 x reconnect_backoff_max),
#: a resync attempt in flight (command_timeout).
HEAL_BOUND = POLL_SECONDS + 1.5 + 2 * 0.5 + 1.0
#: What a cache read may take while the link is dead: the L2 deadline, the loader, slack.
GET_BOUND = L2_TIMEOUT + 0.25

Fault = Literal["freeze", "blackhole"]


class Db:
    """The pods' database (L3): a dict and a count of loads."""

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {"user:1": "v1", "user:2": "w1"}
        self.loads = 0

    async def load(self, key: str) -> Any:
        self.loads += 1
        return self.rows.get(key)


@dataclass
class World:
    proxy: FaultProxy
    pub: AsyncPublisher
    sub: AsyncSubscriber[Any]
    cache: AsyncTwoLevelCache
    other: AsyncTwoLevelCache  # another pod's cache, straight to Redis
    hook: RecordingHook
    db: Db

    async def read(self, key: str) -> tuple[Any, float]:
        began = time.monotonic()
        value = await self.cache.get(key, self.db.load)
        return value, time.monotonic() - began


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    px = FaultProxy(watch=(b"ZADD", b"XRANGE", S.LOAD.sha.encode()))
    yield px
    px.close()


def _config(url: str, namespace: str, **subscriber: Any) -> HotReloadConfig:
    return make_config(url=url, namespace=namespace, subscriber={**TIMINGS, **subscriber})


@pytest.fixture
async def world(proxy: FaultProxy, namespace: str) -> AsyncIterator[Any]:
    made: list[Any] = []

    async def build(**subscriber: Any) -> World:
        pub = AsyncPublisher(_config(REDIS_URL, namespace), namespace=namespace)
        made.append(pub)
        await pub.publish({"n": 0})
        sub: AsyncSubscriber[Any] = AsyncSubscriber(_config(proxy.url, namespace, **subscriber),
                                                    namespace=namespace)
        made.append(sub)
        await sub.start()
        peer: AsyncSubscriber[Any] = AsyncSubscriber(_config(REDIS_URL, namespace),
                                                     namespace=namespace)
        made.append(peer)
        await peer.start()
        hook = RecordingHook()
        sub.register_cache(hook)
        cache = AsyncTwoLevelCache(sub, name="c")
        other = AsyncTwoLevelCache(peer, name="c")
        made[:0] = [cache, other]
        db = Db()
        w = World(proxy, pub, sub, cache, other, hook, db)
        await await_until(lambda: cache.trusted and other.trusted, what="caches trusted")
        for key in db.rows:
            assert (await w.read(key))[0] == db.rows[key]
        assert cache.l1.get("user:1") == "v1"  # in L1 (and in L2)
        return w

    yield build
    for thing in made:
        await thing.aclose()


async def _dead_link_noticed(w: World) -> float:
    """Wait until the pod marks the link down; return how long after the fault that was."""
    await await_until(lambda: not w.sub.connected and w.hook.trusted[-1] is False
                      and not w.cache.trusted, timeout=15, what="the dead link noticed")
    return time.monotonic() - w.proxy.fault_at


async def _while_dead(w: World) -> None:
    """The rest of the cluster moves on; the pod must neither block nor serve the old row."""
    w.db.rows["user:1"] = "v2"
    await w.other.invalidate("user:1")  # another pod: its commit, then the invalidation
    result = await w.pub.publish({"n": 1, "during": True})
    for _ in range(3):
        value, took = await w.read("user:1")
        assert value == "v2", "an invalidated row was served from L1 after the link was distrusted"
        assert took <= GET_BOUND, f"cache.get blocked {took:.2f}s on a dead link"
    assert w.sub.version < result.version or w.proxy.mode != "blackhole"


async def _heals(w: World, fault: Fault) -> None:
    w.proxy.restore()
    healed = time.monotonic()
    snap = await w.pub.snapshot()
    target = snap.version
    await w.sub.wait_for_version(target, timeout=HEAL_BOUND + 5)
    await await_until(lambda: w.sub.connected and w.cache.trusted, timeout=HEAL_BOUND + 5,
                      what="the cache trusted again")
    took = time.monotonic() - healed
    assert took <= HEAL_BOUND, f"converged {took:.2f}s after the {fault} ended"
    assert w.sub.as_dict() == snap.settings
    assert (await w.read("user:1"))[0] == "v2"
    loads = w.db.loads
    assert (await w.read("user:1"))[0] == "v2" and w.db.loads == loads  # L1 serves again
    w.db.rows["user:1"] = "v3"
    await w.other.invalidate("user:1")  # and invalidations reach it again
    await await_until(lambda: w.cache.l1.get("user:1") is None, what="the invalidation applied")
    assert (await w.read("user:1"))[0] == "v3"


async def _detect_and_heal(w: World, fault: Fault) -> None:
    took = await _dead_link_noticed(w)
    assert took <= DETECTION_BOUND, f"the {fault} was noticed after {took:.2f}s"
    await _while_dead(w)
    await _heals(w, fault)


FAULTS = ["freeze", "blackhole"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_idle(world: Any, fault: Fault) -> None:
    w: World = await world()
    getattr(w.proxy, fault)()
    await _detect_and_heal(w, fault)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("before", [0.3, 0.1, 0.02, 0.0])
async def test_around_the_backstops_version_check(world: Any, fault: Fault,
                                                   before: float) -> None:
    """The backstop writes the presence record and reads the head (one pipeline, with ZADD)
    every version_check_interval: fault ``before`` seconds ahead of it, or (0) as it is sent."""
    w: World = await world()
    if before == 0.0:
        w.proxy.arm(b"ZADD", fault)
    else:
        last = await asyncio.to_thread(w.proxy.wait_seen, b"ZADD", time.monotonic())
        await asyncio.sleep(max(0.0, last + TIMINGS["version_check_interval"] - before
                                - time.monotonic()))  # the phase of the fault
        getattr(w.proxy, fault)()
    await await_until(lambda: not w.proxy.armed, what="the fault")
    await _detect_and_heal(w, fault)


async def _missed_events(w: World, count: int) -> None:
    """Cut the pod off, publish ``count`` events it misses, and let it reconnect."""
    w.proxy.cut()
    await await_until(lambda: not w.sub.connected, what="the cut noticed")
    for i in range(count):
        await w.pub.publish({"missed": i})


@pytest.mark.parametrize("fault", FAULTS)
async def test_during_a_replay(world: Any, fault: Fault) -> None:
    w: World = await world()
    await _missed_events(w, 3)
    _reopen(w.proxy, b"XRANGE", fault)  # the replay's read of the change log
    await await_until(lambda: not w.proxy.armed, timeout=10, what="the replay")
    await _detect_and_heal(w, fault)
    assert w.sub.stats.replays >= 1


@pytest.mark.parametrize("fault", FAULTS)
async def test_during_a_full_load(world: Any, fault: Fault) -> None:
    w: World = await world(replay_limit=1)
    await _missed_events(w, 3)  # a gap past replay_limit: a load
    _reopen(w.proxy, S.LOAD.sha.encode(), fault)
    await await_until(lambda: not w.proxy.armed, timeout=10, what="the load")
    await _detect_and_heal(w, fault)


@pytest.mark.parametrize("fault", FAULTS)
async def test_during_a_cache_read_of_l2(world: Any, fault: Fault) -> None:
    w: World = await world()
    w.cache.l1.invalidate("user:2")  # an L1 miss: the next get reads L2
    w.proxy.arm(b"cache:c:user:2", fault)
    value, took = await w.read("user:2")
    assert not w.proxy.armed
    assert value == "w1" and took <= GET_BOUND
    await _detect_and_heal(w, fault)


def _reopen(proxy: FaultProxy, pattern: bytes, fault: Fault) -> None:
    """Let the cut-off pod reconnect, with ``fault`` armed for when it sends ``pattern``."""
    proxy.arm(pattern, fault)
    proxy.restore()


def test_the_sync_cache_never_blocks_on_a_black_hole(proxy: FaultProxy, namespace: str) -> None:
    """`TwoLevelCache.get` (the sync facade) while the link swallows everything: the L2 read
    gives up at its deadline, the loader serves, and L1 is not served once distrusted."""
    rows = {"user:1": "v1"}
    with Publisher(_config(REDIS_URL, namespace), namespace=namespace) as pub:
        pub.publish({"n": 0})
    with Subscriber(_config(proxy.url, namespace), namespace=namespace) as sub:
        cache = TwoLevelCache(sub, name="c")
        try:
            wait_until(lambda: cache.trusted, what="cache trusted")
            assert cache.get("user:1", rows.get) == "v1"
            assert cache.l1.get("user:1") == "v1"
            proxy.blackhole()
            wait_until(lambda: not cache.trusted, timeout=DETECTION_BOUND,
                       what="the black hole noticed")
            rows["user:1"] = "v2"
            for key in ("user:1", "user:9"):
                began = time.monotonic()
                assert cache.get(key, rows.get) == rows.get(key)
                assert time.monotonic() - began <= GET_BOUND
            proxy.restore()
            wait_until(lambda: cache.trusted, timeout=HEAL_BOUND, what="trusted again")
        finally:
            cache.close()

