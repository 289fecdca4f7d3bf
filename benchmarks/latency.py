"""Row: ``Publisher.publish`` → subscriber listener, vs raw redis-py PUBLISH → raw subscriber."""

from __future__ import annotations

import asyncio
import time

from ._hosts import Hosts
from ._stats import Latency, Options, Pacer, Row, fanout_latency, latency_row, unique

WARMUP = 20
GROUP = "publish"


def _send_async(opts: Options, kind: str, target: str, rate: float, n: int) -> dict[int, int]:
    """Publish seqs ``0..WARMUP+n-1`` from an asyncio loop; return the measured send times."""

    async def main() -> dict[int, int]:
        sent: dict[int, int] = {}
        if kind == "hotreload":
            from hotreload import AsyncPublisher, HotReloadConfig

            pub = AsyncPublisher(HotReloadConfig.from_url(opts.redis_url), namespace=target)

            async def send(seq: int) -> None:
                await pub.publish({"bench.seq": seq})

            close = pub.aclose
        else:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(opts.redis_url)

            async def send(seq: int) -> None:
                await client.publish(target, str(seq))

            close = client.aclose
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


def measure(opts: Options, kind: str, flavor: str, rate: float, n: int, *,
            subscribers: int = 1, procs: int = 1) -> Latency:
    """Publish ``n`` events at ``rate``/s to ``subscribers`` in ``procs`` processes."""
    target = unique("bench-pub" if kind == "hotreload" else "bench-raw")
    hosts = Hosts(kind, subscribers, target, opts.redis_url, procs)
    try:
        hosts.wait_ready()
        sender = _send_async if flavor == "async" else _send_sync
        sent = sender(opts, kind, target, rate, n)
    except BaseException:
        hosts.close()
        raise
    achieved = sent.pop(-1)
    records, _ = hosts.finish("max", WARMUP + n - 1, timeout=30.0)
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
