"""A dead link is noticed within heartbeat_interval + heartbeat_timeout (+ the reader's poll),
whatever the subscriber is doing when it dies: no server call may delay the heartbeat deadline
(issue: a version check blocked the deadline for 15-20 s)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.unit.memory_fixtures import DETECTION_BOUND, Pods, Recorder, config, eventually


async def _frozen_until_noticed(pods: Pods, sub: object, hook: Recorder) -> float:
    t0 = time.monotonic()
    pods.server.freeze()
    await eventually(lambda: hook.trusted[-1] is False and not sub.connected,  # type: ignore[attr-defined]
                     timeout=10, what="the dead link noticed")
    return time.monotonic() - t0


@pytest.mark.parametrize("offset", [0.0, 0.1, 0.2, 0.3, 0.4, 0.45, 0.49])
async def test_noticed_within_the_bound_whatever_the_backstop_is_doing(
        pods: Pods, offset: float) -> None:
    """The backstop reads the server every 0.5 s: freeze at every phase of that cycle."""
    pub = pods.publisher()
    await pub.publish({"n": 1})
    sub = await pods.subscriber()
    hook = Recorder()
    sub.register_cache(hook)
    await asyncio.sleep(offset)  # the phase of the fault (not a synchronisation)
    took = await _frozen_until_noticed(pods, sub, hook)
    assert took <= DETECTION_BOUND


async def test_noticed_within_the_bound_during_a_replay(pods: Pods) -> None:
    """The link dies while the syncer waits for a replay read from the server."""
    pub = pods.publisher()
    await pub.publish({"n": 0})
    sub = await pods.subscriber(config(subscriber={"command_timeout": 30}))
    hook = Recorder()
    sub.register_cache(hook)
    pods.server.cut()
    for i in range(1, 4):
        await pub.publish({"n": i})
    pods.server.freeze()  # the reconnect's catch-up reads now hang
    t0 = time.monotonic()
    await eventually(lambda: not sub.connected, timeout=10, what="the dead link noticed")
    assert time.monotonic() - t0 <= DETECTION_BOUND
    pods.server.thaw()
    await sub.wait_for_version(4, 10)
    assert sub.get("n") == 3


async def test_a_frozen_server_neither_blocks_nor_fools_a_running_subscriber(
        pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 1})
    sub = await pods.subscriber()
    hook = Recorder()
    sub.register_cache(hook)
    took = await _frozen_until_noticed(pods, sub, hook)
    assert took <= DETECTION_BOUND
    assert sub.get("n") == 1  # reads never block: the settings stay served
    pods.server.thaw()
    await eventually(lambda: sub.connected and hook.trusted[-1], timeout=10, what="recovery")
    result = await pub.publish({"n": 2})
    await sub.wait_for_version(result.version, 5)
