"""The subscriber gauges the daemon computes from presence records (hotreload.daemon.presence):
the pure counting, and `refresh_presence` over the memory transport with real subscribers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pydantic
import pytest

from hotreload.daemon.metrics import Metrics
from hotreload.daemon.presence import HEAD_GRACE, HeadLog, count_presence, refresh_presence
from hotreload.wire.presence import PresenceRecord
from tests.unit.memory_fixtures import Pods, eventually, pods, server  # noqa: F401

T0 = 1_000_000.0


def rec(version: int, *, epoch: str = "e1", refreshed_at: float, link: str = "up",
        rejected: dict[str, Any] | None = None, name: str = "i") -> PresenceRecord:
    return PresenceRecord(instance=name, service="api", version=version, epoch=epoch,
                          received_version=version, link=link,  # type: ignore[arg-type]
                          rejected=rejected, refreshed_at=refreshed_at)


def gauge(metrics: Metrics, name: str, ns: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"namespace": ns})


def test_a_record_older_than_the_head_it_had_time_to_see_is_behind() -> None:
    heads = HeadLog()
    heads.observe("e1", 5, T0)
    late = T0 + HEAD_GRACE + 1
    counts = count_presence([rec(5, refreshed_at=late, name="a"),
                             rec(4, refreshed_at=late, name="b"),
                             rec(3, refreshed_at=late, name="c")], heads)
    assert (counts.instances, counts.behind, counts.max_lag) == (3, 2, 2)


def test_a_record_refreshed_before_the_head_moved_is_not_behind() -> None:
    heads = HeadLog()
    heads.observe("e1", 4, T0)
    heads.observe("e1", 5, T0 + 10)
    # refreshed after v4 was seen, before v5: it shows v4, as it should
    counts = count_presence([rec(4, refreshed_at=T0 + 9)], heads)
    assert (counts.behind, counts.max_lag) == (0, 1)
    # within the grace after v5 was seen: the event may still be in flight
    assert count_presence([rec(4, refreshed_at=T0 + 10 + HEAD_GRACE / 2)], heads).behind == 0
    # refreshed long after v5 and still on v4: behind
    assert count_presence([rec(4, refreshed_at=T0 + 10 + HEAD_GRACE + 1)], heads).behind == 1


def test_a_stuck_instance_counts_even_while_the_namespace_keeps_changing() -> None:
    heads = HeadLog()
    for i in range(20):  # a new version every second
        heads.observe("e1", 10 + i, T0 + i)
    counts = count_presence([rec(3, refreshed_at=T0 + 19.5)], heads)
    assert (counts.behind, counts.max_lag) == (1, 26)


def test_another_epoch_is_behind_and_has_no_lag() -> None:
    heads = HeadLog()
    heads.observe("e2", 1, T0)
    counts = count_presence([rec(40, epoch="e1", refreshed_at=T0 + 5)], heads)
    assert (counts.behind, counts.max_lag) == (1, 0)


def test_no_head_seen_yet_or_none_published_counts_nobody_behind() -> None:
    assert count_presence([rec(0, refreshed_at=T0)], HeadLog()).behind == 0
    heads = HeadLog()
    heads.observe(None, 0, T0)
    assert count_presence([rec(0, epoch="", refreshed_at=T0 + 5)], heads).behind == 0


def test_rejections_and_links() -> None:
    heads = HeadLog()
    heads.observe("e1", 2, T0)
    counts = count_presence([
        rec(2, refreshed_at=T0 + 5, rejected={"version": 3, "reason": "x"}, name="a"),
        rec(2, refreshed_at=T0 + 5, link="stale", name="b"),
        rec(2, refreshed_at=T0 + 5, link="down", name="c"),
        rec(2, refreshed_at=T0 + 5, name="d"),
    ], heads)
    assert (counts.instances, counts.rejected, counts.link_down, counts.behind) == (4, 1, 2, 0)


def test_the_head_log_forgets_old_heads_but_keeps_the_newest_older_one() -> None:
    heads = HeadLog(memory=60)
    heads.observe("e1", 1, T0)
    heads.observe("e1", 1, T0 + 1)  # the same head again: not a new entry
    heads.observe("e1", 2, T0 + 100)
    heads.observe("e1", 3, T0 + 200)
    assert heads.expected_at(T0 + 150) == ("e1", 2)
    assert heads.expected_at(T0 + 50) is None  # forgotten
    assert heads.current == ("e1", 3)


class Strict(pydantic.BaseModel):
    limit: int = 1


async def test_refresh_reads_presence_and_heads_of_real_subscribers(pods: Pods) -> None:  # noqa: F811
    pub = pods.publisher()
    await pub.publish({"limit": 1})
    subs = [await pods.subscriber(service="api") for _ in range(2)]
    strict = await pods.subscriber(model=Strict, service="api")
    metrics, heads = Metrics(), {}
    transport = pods.transport()
    await eventually(lambda: len(pods.server.keys("*presence*")) >= 3, what="records")

    result = await pub.publish({"limit": "many"})  # the model of `strict` rejects it
    for sub in subs:
        await sub.wait_for_version(result.version)
    await eventually(lambda: strict.last_error is not None, what="the rejection")

    async def refreshed() -> bool:  # what a daemon sees, reading every few moments
        await refresh_presence(transport, metrics, ["app", "app"], heads)
        return (gauge(metrics, "hotreload_instances_rejected", "app"),
                gauge(metrics, "hotreload_instances_behind", "app")) == (1.0, 1.0)

    # strict keeps v1: behind once its record is refreshed after the daemon saw v2
    await eventually_async(refreshed, timeout=10)
    assert gauge(metrics, "hotreload_instances", "app") == 3.0
    assert gauge(metrics, "hotreload_instances_max_lag", "app") == 1.0
    assert gauge(metrics, "hotreload_instances_link_down", "app") == 0.0
    assert gauge(metrics, "hotreload_instances", "other") is None

    await strict.aclose()  # a clean stop removes its record
    await refresh_presence(transport, metrics, ["app"], heads)
    assert gauge(metrics, "hotreload_instances", "app") == 2.0
    assert gauge(metrics, "hotreload_instances_behind", "app") == 0.0


async def test_refresh_keeps_the_last_values_while_redis_fails(pods: Pods) -> None:  # noqa: F811
    await pods.subscriber()
    metrics, heads = Metrics(), {}
    transport = pods.transport()
    await eventually(lambda: pods.server.keys("*presence*"), what="the record")
    await refresh_presence(transport, metrics, ["app"], heads)
    assert gauge(metrics, "hotreload_instances", "app") == 1.0
    pods.server.fail_next(1)
    await refresh_presence(transport, metrics, ["app"], heads)  # no error raised
    assert gauge(metrics, "hotreload_instances", "app") == 1.0


async def eventually_async(cond: Any, timeout: float = 5.0) -> None:
    """Await ``cond()`` until it is true (each call reads the server: no sleep between)."""
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        await asyncio.sleep(0.05)
