"""Percentiles, rate control, unique names and the Markdown table shared by every row."""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

NOT_AVAILABLE = "not available (module missing)"
NOT_INSTALLED = "not installed"


@dataclass(frozen=True, slots=True)
class Options:
    """What every row receives from the command line."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    dsn: str = "postgresql://postgres@127.0.0.1:5432/test"
    quick: bool = False

    def n(self, full: int, quick: int) -> int:
        """A sample count: ``full`` normally, ``quick`` with ``--quick``."""
        return quick if self.quick else full


@dataclass(slots=True)
class Row:
    """One printed line of the results table."""

    name: str
    hotreload: str
    baseline: str
    ratio: str = ""
    target: str = ""
    verdict: str = ""
    notes: str = ""
    group: str = ""

    def cells(self) -> list[str]:
        return [self.name, self.hotreload, self.baseline, self.ratio, self.target, self.verdict,
                self.notes]


@dataclass(slots=True)
class Latency:
    """Latency samples in nanoseconds, plus how many events never arrived."""

    samples: list[int] = field(default_factory=list)
    lost: int = 0
    rate: float = 0.0  # achieved send rate (events/s), 0 if unknown

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    def describe(self) -> str:
        if not self.samples:
            return f"no samples (lost {self.lost})"
        text = f"p50 {fmt_ns(self.p50)} / p99 {fmt_ns(self.p99)}"
        if self.lost:
            text += f", LOST {self.lost}"
        return text


HEADER = ["row", "hotreload", "baseline (same run)", "ratio", "target", "met?", "notes"]


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def fmt_ns(ns: float) -> str:
    """A duration in the most readable unit."""
    if math.isnan(ns):
        return "n/a"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def ratio(value: float, base: float) -> float:
    if base <= 0 or math.isnan(value) or math.isnan(base):
        return math.nan
    return value / base


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


#: In every name `unique` makes, so that `cleanup` can find this run's Redis keys.
RUN_TOKEN = f"r{uuid.uuid4().hex[:8]}"


def unique(prefix: str) -> str:
    """A name no other benchmark run or test uses (namespaces, channels, tables)."""
    return f"{prefix}-{RUN_TOKEN}-{uuid.uuid4().hex[:8]}"


def cleanup(redis_url: str) -> int:
    """Delete the Redis keys this run created (heads, leaves, logs, caches); returns count."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{RUN_TOKEN}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
        return len(keys)
    finally:
        client.close()


def applied_times(records: Iterable[tuple[int, int]], last: int) -> dict[int, int]:
    """``seq -> first time a value >= seq was seen``, from ``(seq, recv_ns)`` in arrival order.

    A subscriber that coalesces (a daemon that folds several updates into one event, a resync)
    has "applied" every older sequence number when it sees a newer one.
    """
    out: dict[int, int] = {}
    high = -1
    for seq, when in records:
        if seq > high:
            for s in range(high + 1, min(seq, last) + 1):
                out[s] = when
            high = seq
    return out


def fanout_latency(per_sub: Sequence[Sequence[tuple[int, int]]], sent: dict[int, int],
                   rate: float = 0.0) -> Latency:
    """Latency until the LAST subscriber applied each event (one subscriber: its latency)."""
    last = max(sent) if sent else -1
    applied = [applied_times(recs, last) for recs in per_sub]
    result = Latency(rate=rate)
    for seq, t0 in sent.items():
        times = [a.get(seq) for a in applied]
        if any(t is None for t in times):
            result.lost += 1
            continue
        result.samples.append(max(t for t in times if t is not None) - t0)
    return result


class Pacer:
    """A deadline scheduler: event ``i`` is due at ``start + i / rate`` (no drift)."""

    def __init__(self, rate: float) -> None:
        self.interval_ns = int(1e9 / rate)
        self.start_ns = time.monotonic_ns()

    def due(self, i: int) -> int:
        return self.start_ns + i * self.interval_ns

    def wait(self, i: int) -> None:
        delay = self.due(i) - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)

    async def await_(self, i: int) -> None:
        delay = self.due(i) - time.monotonic_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)

    def achieved(self, count: int) -> float:
        elapsed = time.monotonic_ns() - self.start_ns
        return count / (elapsed / 1e9) if elapsed > 0 else math.nan


def render(rows: Sequence[Row]) -> str:
    """The Markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        cells = [c.replace("|", "\\|").replace("\n", " ") for c in row.cells()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def latency_row(name: str, hr: Latency, base: Latency, max_ratio: float, *,
                target: str | None = None, abs_limit_ns: float | None = None,
                notes: str = "", group: str = "") -> Row:
    """A row comparing p99s: met when ``hr.p99 <= max_ratio * base.p99`` (and the limit)."""
    r99 = ratio(hr.p99, base.p99)
    r50 = ratio(hr.p50, base.p50)
    ok: bool | None = None
    if not math.isnan(r99):
        ok = r99 <= max_ratio and not hr.lost
        if abs_limit_ns is not None:
            ok = ok and hr.p99 < abs_limit_ns
    extra = []
    if hr.rate:
        extra.append(f"sent at {hr.rate:,.0f}/s")
    extra.append(f"n={len(hr.samples)}")
    if notes:
        extra.append(notes)
    return Row(name, hr.describe(), base.describe(),
               f"p99 {fmt_ratio(r99)} (p50 {fmt_ratio(r50)})",
               target or f"p99 ≤ {max_ratio:g}x", verdict(ok), "; ".join(extra), group)


def unavailable(name: str, why: str, target: str = "", group: str = "") -> Row:
    return Row(name, why, "", "", target, "n/a", "", group)
