"""The soak's checker (benchmarks/_soak_check.py) finds what it claims to find."""

from __future__ import annotations

from benchmarks._soak_check import Commit, History, check

E1, E2 = "1000-0000000000000001", "2000-0000000000000002"


def history() -> History:
    h = History()
    for version, ts in ((1, 10.0), (2, 20.0), (3, 30.0)):
        h.add(Commit("ns", E1, version, f"c{version}", ts))
    h.add(Commit("ns", E2, 1, "d1", 40.0))
    return h


def test_a_consistent_pod_passes() -> None:
    samples = [(0, 11.0, "ns", E1, 1, "c1"), (0, 21.0, "ns", E1, 2, "c2"),
               (0, 33.0, "ns", E1, 3, "c3"), (0, 41.0, "ns", E2, 1, "d1")]
    report = check(history(), samples, [], {}, {}, bound=2.0)
    assert report.violations == 0 and report.judged == 4 and report.max_lag < 2.0


def test_each_kind_of_violation_is_found() -> None:
    samples = [(0, 25.0, "ns", E1, 1, "c1"),    # stale: v2 was committed 5 s before
               (1, 21.0, "ns", E1, 2, "zz"),    # half-applied: not v2's checksum
               (2, 41.0, "ns", E2, 1, "d1"),
               (2, 42.0, "ns", E1, 3, "c3")]    # regression: back to an older epoch
    report = check(history(), samples, [], {}, {}, bound=2.0)
    assert len(report.stale) == 2  # pod 0, and pod 2 back in E1 after E2 began
    assert len(report.half_applied) == 1 and len(report.regressions) == 1


def test_fault_windows_excuse_staleness_only() -> None:
    samples = [(0, 25.0, "ns", E1, 1, "c1"), (0, 26.0, "ns", E1, 2, "xx")]
    report = check(history(), samples, [], {}, {0: [(24.0, 27.0)]}, bound=2.0)
    assert not report.stale and len(report.half_applied) == 1 and report.judged == 0


def test_stale_cache_reads() -> None:
    writes = {"k": [(1, 10.0), (2, 20.0)]}
    reads = [(0, 21.0, 21.1, "k", 1),   # within the bound of the invalidation: fine
             (0, 25.0, 25.1, "k", 1),   # 5 s after: stale
             (1, 25.0, 25.1, "k", 2)]
    report = check(History(), [], reads, writes, {}, bound=2.0)
    assert len(report.stale_reads) == 1 and report.max_read_lag == 5.0
