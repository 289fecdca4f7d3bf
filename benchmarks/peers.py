"""Peer rows: encode/broadcaster (Redis backend) and cashews (client-side cache).

Neither works as shipped with redis-py 8.1, so each is measured with the smallest workaround:

* broadcaster 0.3.1: ``RedisBackend.subscribe`` wakes its listener task *before* the SUBSCRIBE
  completes; the listener's ``pubsub.listen()`` sees no subscription yet, returns at once, and the
  task goes back to waiting forever: nothing is ever delivered. Fix: a backend subclass that
  subscribes first, then wakes the listener (`FixedRedisBackend`).
* cashews 7.6: its client-side cache redirects CLIENT TRACKING (BCAST) invalidations to a pubsub
  connection; under RESP3 (redis-py 8's default) Redis sends them as ``invalidate`` push frames,
  which redis-py's ``get_message`` never returns, so every invalidation is lost and stale values
  are served forever. Fix: ``protocol=2``.

Each row also re-checks, in the same run, that the shipped configuration is still broken.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import time
import uuid
from typing import Any

from . import latency
from ._stats import (
    NOT_AVAILABLE,
    NOT_INSTALLED,
    Latency,
    Metric,
    Options,
    Row,
    fanout_latency,
    fmt_ratio,
    latency_row,
    ratio,
)

PROBE_SECONDS = 2.0


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _fixed_backend_class() -> Any:
    from broadcaster._backends.redis import RedisBackend

    class FixedRedisBackend(RedisBackend):
        """Subscribe first, then wake the listener (it exits at once if nothing is subscribed)."""

        async def subscribe(self, channel: str) -> None:
            await self._pubsub.subscribe(channel)
            self._ready.set()

    return FixedRedisBackend


def broadcast(redis_url: str, *, fixed: bool = True) -> Any:
    """A `broadcaster.Broadcast` on Redis, with the workaround unless ``fixed=False``."""
    from broadcaster import Broadcast
    from broadcaster._backends.redis import RedisBackend

    cls = _fixed_backend_class() if fixed else RedisBackend
    return Broadcast(backend=cls(redis_url))


async def _probe_broadcaster(redis_url: str, fixed: bool) -> bool:
    """Does one published message arrive within PROBE_SECONDS?"""
    channel = f"bench-probe-{uuid.uuid4().hex[:12]}"
    bc = broadcast(redis_url, fixed=fixed)
    await bc.connect()
    try:
        async with bc.subscribe(channel) as sub:
            await asyncio.sleep(0.1)
            await bc.publish(channel, "probe")
            try:
                await asyncio.wait_for(sub.get(), PROBE_SECONDS)
                return True
            except TimeoutError:
                return False
    finally:
        await bc.disconnect()


def _throughput(records: list[list[tuple[int, int]]], sent: dict[int, int]) -> tuple[float, int]:
    """Messages/s from the first send until the last arrival, and how many were lost."""
    lat = fanout_latency(records, sent)
    if not lat.samples:
        return float("nan"), lat.lost
    first = min(sent.values())
    last = max(t for recs in records for _, t in recs)
    return len(lat.samples) / ((last - first) / 1e9), lat.lost


def run_broadcaster(opts: Options) -> list[Row]:
    if not installed("broadcaster"):
        return [Row("peer: broadcaster publish → delivery", "", NOT_INSTALLED, "", "report",
                    "n/a", "pip install broadcaster", "broadcaster")]
    shipped = asyncio.run(_probe_broadcaster(opts.redis_url, fixed=False))
    fixed = asyncio.run(_probe_broadcaster(opts.redis_url, fixed=True))
    how = (f"as shipped: {'delivered' if shipped else 'delivered NOTHING'} in "
           f"{PROBE_SECONDS:g} s (checked this run); measured with a backend subclass that "
           f"subscribes before waking its listener ({'works' if fixed else 'STILL BROKEN'})")
    rate, n = 100.0, opts.n(1000, 30)
    hr = latency.measure(opts, "hotreload", "async", rate, n)
    peer = latency.measure(opts, "broadcaster", "async", rate, n)
    rows = [_report_latency(f"peer: broadcaster publish → delivery @ {rate:g}/s", hr, peer,
                            "broadcaster: ", f"hotreload: AsyncPublisher → AsyncSubscriber "
                            f"listener; n={n}; " + how, "broadcaster")]
    total = opts.n(10_000, 200)
    hr_rec, hr_sent, _ = latency.collect(opts, "hotreload", "async", 1e9, total)
    peer_rec, peer_sent, _ = latency.collect(opts, "broadcaster", "async", 1e9, total)
    hr_tp, hr_lost = _throughput(hr_rec, hr_sent)
    peer_tp, peer_lost = _throughput(peer_rec, peer_sent)
    rows.append(Row("peer: broadcaster 1→1 throughput (publisher awaits each send)",
                    f"{hr_tp:,.0f} msg/s, lost {hr_lost}",
                    f"broadcaster: {peer_tp:,.0f} msg/s, lost {peer_lost}",
                    fmt_ratio(ratio(hr_tp, peer_tp)), "report", "n/a",
                    f"{total:,} messages, one subscriber process; hotreload publishes are "
                    "versioned, logged and atomic (Lua), broadcaster's are a bare PUBLISH",
                    "broadcaster",
                    Metric(ratio(hr_tp, peer_tp), {"tp": hr_tp, "lost": hr_lost},
                           {"tp": peer_tp, "lost": peer_lost}, "{tp} msg/s, lost {lost}",
                           "broadcaster: {tp} msg/s, lost {lost}",
                           fmt=lambda v: f"{v:,.0f}")))
    return rows


async def _probe_cashews(redis_url: str, protocol: int | None) -> bool:
    """Is a write by another client seen by a client-side cache within PROBE_SECONDS?"""
    from cashews import Cache

    prefix = f"bench-probe-{uuid.uuid4().hex[:12]}:"
    extra: dict[str, Any] = {} if protocol is None else {"protocol": protocol}
    reader, writer = Cache(), Cache()
    reader.setup(redis_url, client_side=True, client_side_prefix=prefix, **extra)
    writer.setup(redis_url, **extra)
    await reader.init()
    await writer.init()
    try:
        await writer.set(prefix + "k", "old", expire=60)
        await reader.get("k")  # fills the reader's L1
        await writer.set(prefix + "k", "new", expire=60)
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            if await reader.get("k") == "new":
                return True
            await asyncio.sleep(0.01)
        return False
    finally:
        await writer.delete(prefix + "k")
        await reader.close()
        await writer.close()


async def _cashews_hit(redis_url: str, number: int) -> float:
    from cashews import Cache

    prefix = f"bench-hit-{uuid.uuid4().hex[:12]}:"
    cache = Cache()
    cache.setup(redis_url, client_side=True, client_side_prefix=prefix, protocol=2)
    await cache.init()
    try:
        await cache.set("k", "value", expire=600)
        await cache.get("k")
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for _ in range(number):
                await cache.get("k")
            best = min(best, (time.perf_counter_ns() - t0) / number)
        await cache.delete("k")
    finally:
        await cache.close()
    return best


def run_cashews(opts: Options) -> list[Row]:
    if not installed("cashews"):
        return [Row("peer: cashews client-side cache", "", NOT_INSTALLED, "", "report", "n/a",
                    "pip install cashews", "cashews")]
    shipped = asyncio.run(_probe_cashews(opts.redis_url, None))
    fixed = asyncio.run(_probe_cashews(opts.redis_url, 2))
    how = (f"as shipped (RESP3): invalidation {'seen' if shipped else 'LOST'} within "
           f"{PROBE_SECONDS:g} s (checked this run); measured with protocol=2 "
           f"({'works' if fixed else 'STILL BROKEN'})")
    number = opts.n(200_000, 2_000)
    peer_hit = asyncio.run(_cashews_hit(opts.redis_url, number))
    hr_hit_row = _hotreload_async_hit(opts, number)
    hr_hit = _ns(hr_hit_row)
    rows = [Row("peer: cashews L1 hit, `await cache.get(key)`", hr_hit_row,
                f"cashews (client_side=True): {peer_hit:,.0f} ns/op",
                fmt_ratio(ratio(hr_hit, peer_hit)), "report", "n/a",
                f"best of 5 x {number:,}; " + how, "cashews",
                None if math.isnan(hr_hit) else Metric(
                    ratio(hr_hit, peer_hit), {"hr": hr_hit}, {"peer": peer_hit},
                    "AsyncTwoLevelCache: {hr} ns/op", "cashews (client_side=True): {peer} ns/op",
                    fmt=lambda v: f"{v:,.0f}"))]
    rate, n = 100.0, opts.n(1000, 30)
    hr = latency.measure(opts, "hotreload-inv", "async", rate, n)
    peer = latency.measure(opts, "cashews", "async", rate, n)
    rows.append(_report_latency(
        f"peer: cashews write → invalidation applied @ {rate:g}/s", hr, peer, "cashews: ",
        f"hotreload: AsyncPublisher.invalidate → on_invalidate listener; cashews: writer SET → "
        f"Redis tracking (BCAST) → reader drops its L1 entry; n={n}", "cashews"))
    return rows


def _report_latency(name: str, hr: Latency, peer: Latency, label: str, notes: str,
                    group: str) -> Row:
    """A "report" row: hotreload vs a peer (the peer in the baseline column)."""
    row = latency_row(name, hr, peer, math.inf, target="report", notes="", group=group,
                      base_label=label)
    row.verdict, row.notes = "n/a", notes
    if row.metric is not None:
        row.metric.judge = None
    return row


def _ns(text: str) -> float:
    try:
        return float(text.split(" ns/op")[0].replace(",", "").split()[-1])
    except (ValueError, IndexError):
        return float("nan")


def _hotreload_async_hit(opts: Options, number: int) -> str:
    """``await AsyncTwoLevelCache.get`` hit cost, as text (or why it is not available)."""
    from . import l1

    if not l1.cache_available():
        return NOT_AVAILABLE
    rows = l1._async_cache_hit(opts, number)
    return f"AsyncTwoLevelCache: {rows[0].hotreload}"


