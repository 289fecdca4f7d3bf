"""Subscriber hosts: child processes (spawn) that run N subscribers and record arrivals.

Every arrival is recorded as ``(seq, time.monotonic_ns())``; CLOCK_MONOTONIC is system-wide on
Linux, so the parent compares it with its own send times. Protocol over a `multiprocessing`
pipe: the child sends ``("ready",)``; the parent later sends ``("finish", mode, value, timeout)``
(mode ``max``: wait until every subscriber saw ``seq >= value``; ``count``: saw ``value``
distinct seqs) and gets ``("records", per_subscriber_records, per_subscriber_all_times)``.

Kinds: ``raw`` (a redis-py asyncio pubsub per subscriber; payload = the seq as ASCII) and
``hotreload`` (an `AsyncSubscriber` per subscriber; ``bench.seq`` changes and invalidations of
keys ``k.<seq>``).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

READY_TIMEOUT = 60.0


@dataclass(slots=True)
class _Recorder:
    records: list[tuple[int, int]]
    alls: list[int]
    seen: set[int]
    high: int = -1

    def add(self, seq: int) -> None:
        self.records.append((seq, time.monotonic_ns()))
        self.seen.add(seq)
        if seq > self.high:
            self.high = seq


def _new() -> _Recorder:
    return _Recorder([], [], set())


async def _raw(redis_url: str, channel: str, rec: _Recorder, started: asyncio.Event) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    ps = client.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe(channel)
    started.set()
    try:
        while True:
            msg = await ps.get_message(timeout=1.0)
            if msg is not None and msg["type"] == "message":
                rec.add(int(msg["data"]))
    finally:
        await ps.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def _broadcaster(redis_url: str, channel: str, rec: _Recorder,
                       started: asyncio.Event) -> None:
    """encode/broadcaster with the smallest fix (see `benchmarks.peers.broadcast`)."""
    from .peers import broadcast

    bc = broadcast(redis_url)
    await bc.connect()
    try:
        async with bc.subscribe(channel) as sub:
            started.set()
            while True:
                event = await sub.get()
                rec.add(int(event.message))
    finally:
        await bc.disconnect()


class _CashewsReader:
    """A cashews client-side cache (RESP2, see `benchmarks.peers`) that records invalidations."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    async def aclose(self) -> None:
        await self.backend.close()


async def _cashews(redis_url: str, prefix: str, rec: _Recorder) -> _CashewsReader:
    from cashews.backends.redis.client_side import BcastClientSide

    backend = BcastClientSide(redis_url, client_side_prefix=prefix, protocol=2, suppress=False)
    await backend.init()  # type: ignore[no-untyped-call]
    local = backend._local_cache
    delete = local.delete

    async def recording_delete(key: str) -> Any:
        # Called by the invalidation listener with the key minus the prefix: "k<seq>".
        if key.startswith("k") and key[1:].isdigit():
            rec.add(int(key[1:]))
        return await delete(key)

    local.delete = recording_delete  # type: ignore[method-assign]
    return _CashewsReader(backend)


def _hotreload_listeners(sub: Any, rec: _Recorder) -> None:
    def on_change(change: Any) -> None:
        for c in change.changes:
            if c.key == "bench.seq" and isinstance(c.new, int):
                rec.add(c.new)

    def on_invalidate(inv: Any) -> None:
        if inv.all:
            rec.alls.append(time.monotonic_ns())
        for key in inv.keys:
            if key.startswith("k."):
                rec.add(int(key[2:]))

    sub.on_change(on_change)
    sub.on_invalidate(on_invalidate)


async def _host(kind: str, n: int, target: str, redis_url: str, conn: Connection) -> None:
    recs = [_new() for _ in range(n)]
    tasks: list[asyncio.Task[None]] = []
    subs: list[Any] = []
    if kind == "raw":
        events = [asyncio.Event() for _ in range(n)]
        tasks = [asyncio.create_task(_raw(redis_url, target, r, e))
                 for r, e in zip(recs, events, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), READY_TIMEOUT)
    elif kind == "hotreload":
        from hotreload import AsyncSubscriber, HotReloadConfig

        config = HotReloadConfig.from_url(redis_url)
        for rec in recs:
            sub: Any = AsyncSubscriber(config, namespace=target)
            _hotreload_listeners(sub, rec)
            subs.append(sub)
        await asyncio.gather(*(s.start(READY_TIMEOUT) for s in subs))
    elif kind == "broadcaster":
        events = [asyncio.Event() for _ in range(n)]
        tasks = [asyncio.create_task(_broadcaster(redis_url, target, r, e))
                 for r, e in zip(recs, events, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), READY_TIMEOUT)
    elif kind == "cashews":
        closers = [await _cashews(redis_url, target, r) for r in recs]
        subs.extend(closers)
    else:
        raise ValueError(kind)
    loop = asyncio.get_running_loop()
    conn.send(("ready",))
    msg = await loop.run_in_executor(None, conn.recv)
    _, mode, value, timeout = msg
    deadline = time.monotonic() + timeout

    def done(r: _Recorder) -> bool:
        return bool(r.high >= value if mode == "max" else len(r.seen) >= value)

    while not all(done(r) for r in recs) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(s.aclose() for s in subs), return_exceptions=True)
    conn.send(("records", [r.records for r in recs], [r.alls for r in recs]))


def host_main(kind: str, n: int, target: str, redis_url: str, conn: Connection) -> None:
    """Entry point of a subscriber host process."""
    asyncio.run(_host(kind, n, target, redis_url, conn))


class Hosts:
    """``procs`` child processes sharing ``n`` subscribers of one kind."""

    def __init__(self, kind: str, n: int, target: str, redis_url: str, procs: int = 1) -> None:
        ctx = mp.get_context("spawn")
        procs = max(1, min(procs, n))
        sizes = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []
        for size in sizes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=host_main, args=(kind, size, target, redis_url, child),
                               daemon=True)
            proc.start()
            self._pipes.append(parent)
            self._procs.append(proc)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        for pipe, proc in zip(self._pipes, self._procs, strict=True):
            if not pipe.poll(timeout):
                raise RuntimeError(f"subscriber host {proc.pid} not ready after {timeout}s")
            pipe.recv()

    def finish(self, mode: str, value: int, timeout: float = 30.0
               ) -> tuple[list[list[tuple[int, int]]], list[list[int]]]:
        """Wait for the hosts to see ``value`` (see module doc), then collect the records."""
        for pipe in self._pipes:
            pipe.send(("finish", mode, value, timeout))
        records: list[list[tuple[int, int]]] = []
        alls: list[list[int]] = []
        for pipe in self._pipes:
            if not pipe.poll(timeout + 60):
                raise RuntimeError("subscriber host did not report")
            _, recs, all_times = pipe.recv()
            records.extend(recs)
            alls.extend(all_times)
        self.close()
        return records, alls

    def close(self) -> None:
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def merge_alls(records: Sequence[list[tuple[int, int]]], alls: Sequence[list[int]],
               sent: dict[int, int]) -> list[list[tuple[int, int]]]:
    """Count an "invalidate everything" event as covering every seq sent before it arrived."""
    out = []
    for recs, all_times in zip(records, alls, strict=True):
        extra = []
        for t in all_times:
            covered = [s for s, t0 in sent.items() if t0 <= t]
            if covered:
                extra.append((max(covered), t))
        out.append(sorted(recs + extra, key=lambda r: r[1]))
    return out
