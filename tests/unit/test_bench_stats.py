"""The benchmark suite's arithmetic: percentiles, coalescing, fan-out latency, the table."""

from __future__ import annotations

import math
import time

from benchmarks._stats import (
    Pacer,
    Row,
    applied_times,
    fanout_latency,
    fmt_ns,
    fmt_ratio,
    percentile,
    render,
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
