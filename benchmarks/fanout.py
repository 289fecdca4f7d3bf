"""Row: fan-out to 1/10/100 subscribers in 2 processes, p99 until the LAST one applied."""

from __future__ import annotations

from . import latency
from ._stats import Options, Row, latency_row

RATE = 100.0
PROCS = 2


def run(opts: Options) -> list[Row]:
    rows: list[Row] = []
    n = opts.n(1000, 30)
    for subscribers in (1, 10, 100):
        procs = min(PROCS, subscribers)
        base = latency.measure(opts, "raw", "async", RATE, n, subscribers=subscribers,
                               procs=procs)
        hr = latency.measure(opts, "hotreload", "async", RATE, n, subscribers=subscribers,
                             procs=procs)
        limit = 10e6 if subscribers == 100 else None
        rows.append(latency_row(
            f"fan-out → {subscribers} subscriber(s) in {procs} process(es) @ {RATE:g}/s, "
            "until the last applied", hr, base, 2.0,
            target="p99 ≤ 2x" + (" and < 10 ms" if limit else ""), abs_limit_ns=limit,
            notes="AsyncPublisher vs redis-py asyncio PUBLISH; one asyncio loop per process "
            "hosts its subscribers (one connection each)", group="fanout"))
    return rows
