"""Rows: full resync of a 10,000-key namespace, and a subscriber's added RSS at 10,000 keys."""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing as mp
import time
import tracemalloc
from multiprocessing.connection import Connection
from typing import Any

from ._stats import (
    Metric,
    Options,
    Row,
    fmt_ns,
    fmt_ratio,
    percentile,
    ratio,
    rss_bytes,
    unique,
    verdict,
)

KEYS = 10_000
#: Seconds between a subscriber's start() and the timed resync (see `_resync`).
SETTLE = 0.05


def document(keys: int = KEYS) -> dict[str, Any]:
    """``keys`` leaves in 100 groups, mixed value types (strings, ints, bools, floats)."""
    groups = max(1, keys // 100)
    doc: dict[str, Any] = {}
    for g in range(groups):
        doc[f"group_{g}"] = {
            f"key_{i}": (f"value-{g}-{i}" if i % 4 == 0 else
                         i * g if i % 4 == 1 else
                         (i % 2 == 0) if i % 4 == 2 else i / 7)
            for i in range(keys // groups)
        }
    return doc


async def _prepare(opts: Options, ns: str) -> bytes:
    """Publish the document; return the exact ``settings`` bytes of its checkpoint (the whole
    document as one JSON text, docs/protocol.md §4.3)."""
    from hotreload import AsyncPublisher, HotReloadConfig

    config = HotReloadConfig.from_url(opts.redis_url)
    async with AsyncPublisher(config, namespace=ns) as pub:
        await pub.replace(document())  # a new namespace: its checkpoint is written with it
        raw = (await pub.transport.load(ns, max_tail=0)).checkpoint.get(b"settings")
    if not isinstance(raw, bytes):
        raise RuntimeError("the namespace has no checkpoint")
    return raw


def run_resync(opts: Options) -> list[Row]:
    return asyncio.run(_resync(opts))


async def _resync(opts: Options) -> list[Row]:
    import redis.asyncio as aioredis

    from hotreload import AsyncSubscriber, HotReloadConfig

    rounds = opts.n(30, 3)
    ns = unique("bench-resync")
    data = await _prepare(opts, ns)
    config = HotReloadConfig.from_url(opts.redis_url)
    client = aioredis.Redis.from_url(opts.redis_url)
    key = unique("bench:resync-bytes")
    await client.set(key, data, ex=600)
    base: list[int] = []
    cold: list[int] = []
    reload: list[int] = []
    try:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            json.loads(await client.get(key) or b"{}")
            base.append(time.perf_counter_ns() - t0)

            t0 = time.perf_counter_ns()
            sub: Any = AsyncSubscriber(config, namespace=ns)
            await sub.start()
            cold.append(time.perf_counter_ns() - t0)
            if sub.get("group_0.key_0") != "value-0-0":
                raise RuntimeError("subscriber did not load the snapshot")
            # A running subscriber: let the follow-ups of its start (presence record,
            # invalidation catch-up) finish, so that they do not run inside the timed load.
            await asyncio.sleep(SETTLE)
            # The load of a resync (what a subscriber does after a gap it cannot replay): one
            # atomic read of head + checkpoint + log tail, verify the checkpoint's digest,
            # decode, check against the head, validate, freeze, swap.
            t0 = time.perf_counter_ns()
            await sub._load("benchmark", first=False)
            reload.append(time.perf_counter_ns() - t0)
            await sub.aclose()
    finally:
        await client.delete(key)
        await client.aclose()
    b50 = percentile(base, 50)
    note = f"{len(data) / 1024:.0f} KiB of JSON; medians of {rounds} rounds"
    base_text = "GET of the same bytes + `json.loads` p50 {p50}"

    def row(name: str, samples: list[int], notes: str) -> Row:
        h50 = percentile(samples, 50)
        r = ratio(h50, b50)
        metric = Metric(r, {"p50": h50}, {"p50": b50}, "p50 {p50}", base_text,
                        judge=lambda value, _: value <= 3)
        return Row(name, f"p50 {fmt_ns(h50)}", base_text.format(p50=fmt_ns(b50)),
                   fmt_ratio(r), "≤ 3x", verdict(r <= 3), notes, "resync", metric)

    return [
        row(f"full resync of a {KEYS:,}-key namespace (a load by a running subscriber)",
            reload, note + f"; `AsyncSubscriber._load`, {SETTLE * 1000:.0f} ms after `start()`"),
        row(f"cold start of a subscriber on a {KEYS:,}-key namespace (`start()` until ready)",
            cold, note + "; includes connecting and subscribing"),
    ]


def _rss_child(kind: str, redis_url: str, ns: str, trace: bool, conn: Connection) -> None:
    """Report ``(rss_before, rss_after, traced)`` around loading 10,000 keys one way or another.

    ``traced`` is what tracemalloc sees still allocated afterwards (steadier than RSS, which
    moves in pages and reuses freed arenas).
    """

    async def main() -> tuple[int, int, int]:
        import redis.asyncio as aioredis

        from hotreload import AsyncSubscriber, HotReloadConfig

        client = aioredis.Redis.from_url(redis_url)
        await client.ping()
        holder: list[Any] = []
        gc.collect()
        before = rss_bytes()
        if trace:
            tracemalloc.start()
        if kind == "hotreload":
            sub: Any = AsyncSubscriber(HotReloadConfig.from_url(redis_url), namespace=ns)
            await sub.start()
            holder.append(sub)
        else:
            from hotreload.wire import keys_for

            raw = await client.hget(keys_for(ns).checkpoint, "settings")
            holder.append(json.loads(raw or b"{}"))
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] if trace else 0
        tracemalloc.stop()
        after = rss_bytes()
        for obj in holder:
            if hasattr(obj, "aclose"):
                await obj.aclose()
        await client.aclose()
        return before, after, traced

    conn.send(asyncio.run(main()))


def _rss_in_child(kind: str, redis_url: str, ns: str) -> tuple[int, int]:
    """(RSS added, bytes held per tracemalloc): two fresh processes, tracemalloc only in one."""
    ctx = mp.get_context("spawn")
    out = []
    for trace in (False, True):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_rss_child, args=(kind, redis_url, ns, trace, child),
                           daemon=True)
        proc.start()
        try:
            if not parent.poll(120):
                raise RuntimeError("RSS probe did not report")
            before, after, traced = parent.recv()
        finally:
            proc.join(10)
        out.append(after - before if not trace else traced)
    return int(out[0]), int(out[1])


def run_rss(opts: Options) -> list[Row]:
    ns = unique("bench-rss")
    asyncio.run(_prepare(opts, ns))
    hr, hr_traced = _rss_in_child("hotreload", opts.redis_url, ns)
    base, base_traced = _rss_in_child("json", opts.redis_url, ns)
    mib = 1024 * 1024
    metric = Metric(ratio(hr_traced, base_traced),
                    {"rss": hr / mib, "traced": hr_traced / mib},
                    {"rss": base / mib, "traced": base_traced / mib},
                    "RSS +{rss} MiB (tracemalloc: {traced} MiB held)",
                    "(reference) the same document as plain `json.loads` dicts: RSS +{rss} MiB "
                    "(tracemalloc: {traced} MiB)", "{ratio} (tracemalloc)",
                    fmt=lambda v: f"{v:.1f}")
    return [Row(f"a subscriber's added RSS at {KEYS:,} keys",
                f"RSS +{hr / mib:.1f} MiB (tracemalloc: {hr_traced / mib:.1f} MiB held)",
                f"(reference) the same document as plain `json.loads` dicts: RSS "
                f"+{base / mib:.1f} MiB (tracemalloc: {base_traced / mib:.1f} MiB)",
                fmt_ratio(ratio(hr_traced, base_traced)) + " (tracemalloc)", "report", "n/a",
                "fresh spawned processes; after gc.collect() minus before (tracemalloc in a "
                "separate run); includes the subscriber's two Redis connections", "rss", metric)]
