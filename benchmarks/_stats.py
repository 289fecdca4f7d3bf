"""Percentiles, rate control, unique names and the Markdown table shared by every row."""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
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
class Metric:
    """The numbers behind one row, so that ``--repeat`` can take medians across runs.

    ``ratio`` is what the row's verdict judges (a same-run ratio). ``hotreload`` and
    ``baseline`` hold the absolute values (shown with ``fmt``) that ``hr_text`` and
    ``base_text`` place by name (``"p50 {p50} / p99 {p99}"``); ``ratio_text`` places
    ``{ratio}`` and the secondary ratios of ``also``. ``judge(ratio, hotreload)`` says whether
    the target is met (None: a "report" row). ``failed`` is a failure of this run that fails the
    row whatever the median (events lost).
    """

    ratio: float
    hotreload: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    hr_text: str = ""
    base_text: str = ""
    ratio_text: str = "{ratio}"
    also: dict[str, float] = field(default_factory=dict)
    fmt: Callable[[float], str] = field(default=lambda v: fmt_ns(v))
    judge: Callable[[float, dict[str, float]], bool] | None = None
    failed: str = ""


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
    metric: Metric | None = None

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
                notes: str = "", group: str = "", base_label: str = "") -> Row:
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

    def judge(r: float, values: dict[str, float]) -> bool:
        return r <= max_ratio and (abs_limit_ns is None or values["p99"] < abs_limit_ns)

    lost = [f"LOST {lat.lost}" for lat in (hr, base) if lat.lost]
    metric = Metric(r99, {"p50": hr.p50, "p99": hr.p99}, {"p50": base.p50, "p99": base.p99},
                    "p50 {p50} / p99 {p99}", _escape(base_label) + "p50 {p50} / p99 {p99}",
                    "p99 {ratio} (p50 {p50})", {"p50": r50}, judge=judge,
                    failed=", ".join(lost) if hr.lost else "")
    return Row(name, hr.describe(), base_label + base.describe(),
               f"p99 {fmt_ratio(r99)} (p50 {fmt_ratio(r50)})",
               target or f"p99 ≤ {max_ratio:g}x", verdict(ok), "; ".join(extra), group, metric)


def unavailable(name: str, why: str, target: str = "", group: str = "") -> Row:
    return Row(name, why, "", "", target, "n/a", "", group)


# --------------------------------------------------------------------------- --repeat


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def single_run(rows: Sequence[Row]) -> list[Row]:
    """One run's rows as printed: a verdict from one run says so."""
    for row in rows:
        if row.verdict in ("yes", "**no**"):
            row.verdict += " (1 run)"
    return list(rows)


def aggregate(runs: Sequence[Sequence[Row]]) -> list[Row]:
    """One row per row name over ``runs`` (the same rows measured N times in one process).

    Each row shows the median of its per-run ratios, their spread (min-max, and every run in
    the notes) and the medians of the absolute values; "met?" judges the median ratio only
    (and is "no" if any run lost events or the row is missing from a run).
    """
    order: list[tuple[str, str]] = []
    seen: dict[tuple[str, str], list[Row]] = {}
    for rows in runs:
        for row in rows:
            key = (row.group, row.name)
            if key not in seen:
                order.append(key)
                seen[key] = []
            seen[key].append(row)
    return [_aggregate_row(seen[key], len(runs)) for key in order]


def _aggregate_row(rows: list[Row], n: int) -> Row:
    last = rows[-1]
    metrics = [r.metric for r in rows if r.metric is not None]
    if not metrics:  # unavailable / error / nothing to take a median of: the last run's row
        note = f"{len(rows)} of {n} runs; shown: the last"
        return Row(last.name, last.hotreload, last.baseline, last.ratio, last.target,
                   last.verdict, "; ".join(filter(None, [note, last.notes])), last.group)
    m = metrics[-1]
    ratios = [x.ratio for x in metrics]
    med = _median(ratios)
    hr_abs = {k: _median([x.hotreload.get(k, math.nan) for x in metrics]) for k in m.hotreload}
    base_abs = {k: _median([x.baseline.get(k, math.nan) for x in metrics]) for k in m.baseline}
    also = {k: fmt_ratio(_median([x.also.get(k, math.nan) for x in metrics])) for k in m.also}
    spread = f"{fmt_ratio(min(ratios))} to {fmt_ratio(max(ratios))}"
    ratio_cell = m.ratio_text.format(ratio=fmt_ratio(med), **also) + f"; runs: {spread}"
    failed = [f"run {i + 1}: {x.failed}" for i, x in enumerate(metrics) if x.failed]
    ok: bool | None = None
    if m.judge is not None and not math.isnan(med):
        ok = m.judge(med, hr_abs) and not failed and len(metrics) == n
    notes = [f"median of {len(metrics)} runs (per run: "
             + ", ".join(fmt_ratio(r) for r in ratios) + ")"]
    if len(metrics) != n:
        notes.append(f"measured in {len(metrics)} of {n} runs")
    notes += failed
    if last.notes:
        notes.append(last.notes)
    return Row(last.name, m.hr_text.format(**{k: m.fmt(v) for k, v in hr_abs.items()}),
               m.base_text.format(**{k: m.fmt(v) for k, v in base_abs.items()}), ratio_cell,
               last.target, verdict(ok), "; ".join(notes), last.group, m)
