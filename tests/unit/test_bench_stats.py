"""The benchmark suite's arithmetic: percentiles, coalescing, fan-out latency, the table."""

from __future__ import annotations

import math
import time

from benchmarks._stats import (
    Latency,
    Pacer,
    Row,
    aggregate,
    applied_times,
    fanout_latency,
    fmt_ns,
    fmt_ratio,
    latency_row,
    percentile,
    render,
    single_run,
)


def test_percentile_nearest_rank() -> None:
    data = list(range(1, 101))
    assert percentile(data, 50) == 50
    assert percentile(data, 99) == 99
    assert percentile(data, 100) == 100
    assert percentile([7], 99) == 7
    assert math.isnan(percentile([], 50))


def test_applied_times_counts_a_newer_value_as_applying_older_ones() -> None:
    # seq 2 never arrived on its own: 3 covers it (a daemon folding a burst).
    got = applied_times([(0, 10), (1, 20), (3, 40), (2, 50)], last=3)
    assert got == {0: 10, 1: 20, 2: 40, 3: 40}


def test_fanout_latency_waits_for_the_slowest_subscriber_and_counts_losses() -> None:
    sent = {0: 100, 1: 200, 2: 300}
    fast = [(0, 110), (1, 210), (2, 310)]
    slow = [(0, 150), (1, 290)]  # never saw 2
    lat = fanout_latency([fast, slow], sent)
    assert sorted(lat.samples) == [50, 90]
    assert lat.lost == 1


def test_formatting_and_table() -> None:
    assert fmt_ns(512) == "512 ns"
    assert fmt_ns(1_500) == "2 µs"
    assert fmt_ns(2_500_000) == "2.50 ms"
    assert fmt_ratio(1.234) == "1.23x"
    assert fmt_ratio(3419.2) == "3,419x"
    table = render([Row("a|b", "1", "2", "0.5x", "t", "yes", "n")])
    assert table.splitlines()[2] == "| a\\|b | 1 | 2 | 0.5x | t | yes | n |"


def test_pacer_has_no_drift() -> None:
    pacer = Pacer(1000)
    assert pacer.due(10) - pacer.due(0) == 10 * 1_000_000
    for i in range(20):
        pacer.wait(i)
    assert time.monotonic_ns() >= pacer.due(19)



def _lat(p50: int, p99: int, lost: int = 0) -> Latency:
    samples = [p50] * 50 + [p99] * 2
    return Latency(samples=sorted(samples), lost=lost)


def test_repeat_reports_the_median_ratio_its_spread_and_judges_the_median() -> None:
    base = _lat(100, 1000)
    runs = [[latency_row("a", _lat(100, p99), base, 2.0, group="g")]
            for p99 in (1500, 2500, 1900)]  # ratios 1.5, 2.5, 1.9: one run misses
    [row] = aggregate(runs)
    assert row.ratio.startswith("p99 1.90x (p50 1.00x); runs: 1.50x to 2.50x")
    assert row.verdict == "yes"
    assert "median of 3 runs (per run: 1.50x, 2.50x, 1.90x)" in row.notes
    assert row.hotreload == "p50 100 ns / p99 2 µs"  # medians of the absolute values
    runs = [[latency_row("a", _lat(100, p99), base, 2.0)] for p99 in (2500, 2100, 1500)]
    assert aggregate(runs)[0].verdict == "**no**"  # one good run does not make it met


def test_repeat_fails_a_row_that_lost_events_in_any_run_or_is_missing() -> None:
    base = _lat(100, 1000)
    runs = [[latency_row("a", _lat(100, 1100, lost=lost), base, 2.0)] for lost in (0, 3, 0)]
    [row] = aggregate(runs)
    assert row.verdict == "**no**" and "run 2: LOST 3" in row.notes
    runs = [[latency_row("a", _lat(100, 1100), base, 2.0)], []]
    [row] = aggregate(runs)
    assert row.verdict == "**no**" and "measured in 1 of 2 runs" in row.notes


def test_a_single_run_says_its_verdict_is_from_one_run() -> None:
    rows = single_run([Row("a", "1", "2", "0.5x", "t", "yes"), Row("b", "", "", "", "", "n/a")])
    assert [r.verdict for r in rows] == ["yes (1 run)", "n/a"]
