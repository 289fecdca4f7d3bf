"""Row: ``Publisher.publish`` → subscriber listener, vs raw redis-py PUBLISH → raw subscriber."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._hosts import Hosts
from ._stats import Latency, Options, Pacer, Row, fanout_latency, latency_row, unique

WARMUP = 20
GROUP = "publish"
GROUP_BIG = "publish-10k"


async def _async_sender(opts: Options, kind: str, target: str
                        ) -> tuple[Callable[[int], Awaitable[Any]], Callable[[], Awaitable[Any]]]:
    """``(send(seq), close())`` for one publisher kind (see `measure`)."""
    if kind in ("hotreload", "hotreload-inv"):
        from hotreload import AsyncPublisher, HotReloadConfig

        pub = AsyncPublisher(HotReloadConfig.from_url(opts.redis_url), namespace=target)
        if kind == "hotreload":
            return (lambda seq: pub.publish({"bench.seq": seq})), pub.aclose
        return (lambda seq: pub.invalidate([f"k.{seq}"])), pub.aclose
    if kind == "raw":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(opts.redis_url)
        return (lambda seq: client.publish(target, str(seq))), client.aclose
    if kind == "broadcaster":
        from .peers import broadcast

        bc = broadcast(opts.redis_url)
        await bc.connect()
        return (lambda seq: bc.publish(target, str(seq))), bc.disconnect
    if kind == "cashews":
        from cashews import Cache

        writer = Cache()
        writer.setup(opts.redis_url, protocol=2)
        await writer.init()
        return (lambda seq: writer.set(f"{target}k{seq}", seq, expire=600)), writer.close
    raise ValueError(kind)


def _send_async(opts: Options, kind: str, target: str, rate: float, n: int) -> dict[int, int]:
    """Publish seqs ``0..WARMUP+n-1`` from an asyncio loop; return the measured send times."""

    async def main() -> dict[int, int]:
        sent: dict[int, int] = {}
        send, close = await _async_sender(opts, kind, target)
        try:
            for seq in range(WARMUP):
                await send(seq)
            await asyncio.sleep(0.2)
            pacer = Pacer(rate)
            for i in range(n):
                await pacer.await_(i)
                seq = WARMUP + i
                sent[seq] = time.monotonic_ns()
                await send(seq)
            sent[-1] = int(pacer.achieved(n))  # smuggle the achieved rate out
        finally:
            await close()
        return sent

    return asyncio.run(main())


def _send_sync(opts: Options, kind: str, target: str, rate: float, n: int) -> dict[int, int]:
    sent: dict[int, int] = {}
    if kind == "hotreload":
        from hotreload import HotReloadConfig, Publisher

        pub = Publisher(HotReloadConfig.from_url(opts.redis_url), namespace=target)

        def send(seq: int) -> None:
            pub.publish({"bench.seq": seq})

        close = pub.close
    else:
        import redis

        client = redis.Redis.from_url(opts.redis_url)

        def send(seq: int) -> None:
            client.publish(target, str(seq))

        close = client.close
    try:
        for seq in range(WARMUP):
            send(seq)
        time.sleep(0.2)
        pacer = Pacer(rate)
        for i in range(n):
            pacer.wait(i)
            seq = WARMUP + i
            sent[seq] = time.monotonic_ns()
            send(seq)
        sent[-1] = int(pacer.achieved(n))
    finally:
        close()
    return sent


def collect(opts: Options, kind: str, flavor: str, rate: float, n: int, *,
            subscribers: int = 1, procs: int = 1, host: str | None = None,
            prefill: dict[str, Any] | None = None,
            ) -> tuple[list[list[tuple[int, int]]], dict[int, int], float]:
    """Send ``n`` events at ``rate``/s to ``subscribers`` in ``procs`` processes.

    ``kind`` picks the sender (``raw``, ``hotreload``, ``hotreload-inv``, ``broadcaster``,
    ``cashews``) and, unless ``host`` is given, the subscriber kind of the same name.
    ``prefill`` (hotreload only) is published as the namespace's document first.
    Returns (per-subscriber records, seq -> send time, achieved rate).
    """
    host = host or ("hotreload" if kind.startswith("hotreload") else kind)
    prefix = {"hotreload": "bench-pub", "hotreload-inv": "bench-inv"}.get(kind, "bench-raw")
    target = unique(prefix) + (":" if kind == "cashews" else "")
    if prefill is not None:
        _prefill(opts, target, prefill)
    hosts = Hosts(host, subscribers, target, opts.redis_url, procs)
    try:
        hosts.wait_ready()
        sender = _send_async if flavor == "async" else _send_sync
        sent = sender(opts, kind, target, rate, n)
    except BaseException:
        hosts.close()
        raise
    achieved = sent.pop(-1)
    records, _ = hosts.finish("max", WARMUP + n - 1, timeout=30.0)
    return records, sent, achieved


def _prefill(opts: Options, namespace: str, document: dict[str, Any]) -> None:
    from hotreload import AsyncPublisher, HotReloadConfig

    async def main() -> None:
        config = HotReloadConfig.from_url(opts.redis_url)
        async with AsyncPublisher(config, namespace=namespace) as pub:
            await pub.replace(document)

    asyncio.run(main())


def measure(opts: Options, kind: str, flavor: str, rate: float, n: int, *,
            subscribers: int = 1, procs: int = 1, prefill: dict[str, Any] | None = None
            ) -> Latency:
    """Latency until the last subscriber applied each event (see `collect`)."""
    records, sent, achieved = collect(opts, kind, flavor, rate, n, subscribers=subscribers,
                                      procs=procs, prefill=prefill)
    return fanout_latency(records, sent, achieved)


def run(opts: Options) -> list[Row]:
    rows: list[Row] = []
    n = opts.n(1000, 50)
    for rate in (100, 1000):
        for flavor, label in (("async", "AsyncPublisher"), ("sync", "Publisher")):
            base = measure(opts, "raw", flavor, rate, n)
            hr = measure(opts, "hotreload", flavor, rate, n)
            rows.append(latency_row(
                f"`{label}.publish` → listener @ {rate}/s", hr, base, 2.0,
                notes="baseline: redis-py " + ("asyncio" if flavor == "async" else "sync")
                + " PUBLISH → raw asyncio subscriber", group=GROUP))
    return rows


def run_big(opts: Options) -> list[Row]:
    """Issue 9: one key changing per event in a 10,000-key namespace, against the same in a
    10-key namespace and against raw PUBLISH, all measured in this run (asyncio, 100/s)."""
    from .resync import KEYS, document

    n = opts.n(1000, 20)
    small_keys = 10
    base = measure(opts, "raw", "async", 100, n)
    small = measure(opts, "hotreload", "async", 100, n, prefill=document(small_keys))
    big = measure(opts, "hotreload", "async", 100, n, prefill=document())
    what = "`AsyncPublisher.publish` → listener @ 100/s"
    raw_notes = "one key changes per event; baseline: redis-py asyncio PUBLISH → raw asyncio " \
        "subscriber"
    return [
        latency_row(f"{what}, namespace of {small_keys} keys", small, base, 2.0,
                    notes=raw_notes, group=GROUP_BIG),
        latency_row(f"{what}, namespace of {KEYS:,} keys", big, base, 2.0,
                    notes=raw_notes, group=GROUP_BIG),
        latency_row(f"{what}: namespace of {KEYS:,} keys vs of {small_keys} keys", big, small,
                    1.3, notes=f"one key changes per event; baseline: the {small_keys}-key row "
                    "above (same run)", group=GROUP_BIG,
                    base_label=f"{small_keys}-key namespace: "),
    ]
