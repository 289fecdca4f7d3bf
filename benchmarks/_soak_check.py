"""The soak's checker: what every pod served, against what was committed and when. No I/O.

Inputs: the commits of each namespace (read from the change logs by the controller, with their
publish time), the pods' samples and cache reads, the writes of the cache's rows (with the time
their invalidation was committed), and the fault windows of each pod (a fault on its link, or on
Redis for all pods: from the fault's start to its end plus the convergence bound).

Violations:

* **half-applied**: a served state whose checksum is not the committed checksum of its
  (epoch, version): a state that was never published;
* **regression**: a pod serving an older version than it served before in the same epoch, or
  an older epoch (protocol §4.5 order) than before;
* **stale**: outside its fault windows, a pod serving a state older than a commit made more
  than ``bound`` seconds before the sample;
* **stale cache read**: outside its fault windows, a cache read returning a row value older
  than one whose invalidation was committed more than ``bound`` seconds before the read began.

A sample of a version the checker never saw committed (its log entry lost with a Redis restart
before it was read) is counted as *unverified*, not judged.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Sample = tuple[int, float, str, "str | None", int, str]
Read = tuple[int, float, float, str, int]


@dataclass(frozen=True, slots=True)
class Commit:
    ns: str
    epoch: str
    version: int
    checksum: str
    ts: float


@dataclass
class Report:
    samples: int = 0
    reads: int = 0
    unverified: int = 0
    judged: int = 0  # samples outside every fault window (checked for staleness)
    reads_judged: int = 0
    half_applied: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    stale_reads: list[str] = field(default_factory=list)
    max_lag: float = 0.0  # outside fault windows: how far behind a served state was
    max_read_lag: float = 0.0

    @property
    def violations(self) -> int:
        return (len(self.half_applied) + len(self.regressions) + len(self.stale)
                + len(self.stale_reads))


def epoch_ms(epoch: str | None) -> int:
    if not epoch:
        return -1
    head = epoch.split("-", 1)[0]
    return int(head) if head.isdigit() else -1


class History:
    """The commits of every namespace, in commit order."""

    def __init__(self) -> None:
        self.by_id: dict[tuple[str, str, int], Commit] = {}
        self.order: dict[str, list[Commit]] = defaultdict(list)
        self.epoch_rank: dict[tuple[str, str], int] = {}

    def add(self, commit: Commit) -> None:
        ident = (commit.ns, commit.epoch, commit.version)
        if ident in self.by_id:
            return
        self.by_id[ident] = commit
        self.order[commit.ns].append(commit)
        if (commit.ns, commit.epoch) not in self.epoch_rank:
            self.epoch_rank[(commit.ns, commit.epoch)] = len(self.epoch_rank)

    def finish(self) -> None:
        for commits in self.order.values():
            commits.sort(key=lambda c: c.ts)

    def count(self) -> int:
        return len(self.by_id)


def _in_windows(windows: Sequence[tuple[float, float]], t: float) -> bool:
    return any(start <= t <= end for start, end in windows)


def _reflects(history: History, ns: str, epoch: str | None, version: int, c: Commit) -> bool:
    """Whether a served (epoch, version) includes commit ``c`` (it or a later one)."""
    if epoch == c.epoch:
        return version >= c.version
    if epoch is None:
        return False
    mine = history.epoch_rank.get((ns, epoch))
    theirs = history.epoch_rank.get((ns, c.epoch))
    if mine is not None and theirs is not None:
        return mine > theirs
    return epoch_ms(epoch) > epoch_ms(c.epoch)


def check(history: History, samples: Iterable[Sample], reads: Iterable[Read],
          writes: dict[str, list[tuple[int, float]]],
          windows: dict[int, list[tuple[float, float]]], bound: float) -> Report:
    history.finish()
    report = Report()
    last: dict[tuple[int, str], tuple[str | None, int]] = {}
    times = {ns: [c.ts for c in commits] for ns, commits in history.order.items()}
    for pod, t, ns, epoch, version, checksum in sorted(samples, key=lambda s: s[1]):
        report.samples += 1
        where = f"pod {pod} {ns} at {t:.3f}: e={epoch} v{version}"
        if epoch is not None and version > 0:
            commit = history.by_id.get((ns, epoch, version))
            if commit is None:
                report.unverified += 1
            elif commit.checksum != checksum:
                report.half_applied.append(f"{where}: checksum {checksum[:12]} is not the "
                                           f"committed {commit.checksum[:12]}")
        prev = last.get((pod, ns))
        if prev is not None and prev[0] is not None:
            if epoch == prev[0] and version < prev[1]:
                report.regressions.append(f"{where}: after v{prev[1]} of the same epoch")
            elif epoch != prev[0] and (epoch is None or not _reflects(
                    history, ns, epoch, version, Commit(ns, prev[0], prev[1], "", 0.0))):
                report.regressions.append(f"{where}: after epoch {prev[0]} v{prev[1]}")
        last[(pod, ns)] = (epoch, version)
        if _in_windows(windows.get(pod, ()), t):
            continue
        report.judged += 1
        commits = history.order.get(ns, [])
        i = bisect.bisect_right(times.get(ns, []), t - bound) - 1
        if i >= 0 and not _reflects(history, ns, epoch, version, commits[i]):
            report.stale.append(f"{where}: behind e={commits[i].epoch} v{commits[i].version} "
                                f"committed {t - commits[i].ts:.2f}s before")
        # the lag: the oldest commit not reflected, among those before t
        j = bisect.bisect_right(times.get(ns, []), t) - 1
        if j >= 0 and not _reflects(history, ns, epoch, version, commits[j]):
            k = j
            while k > 0 and not _reflects(history, ns, epoch, version, commits[k - 1]):
                k -= 1
                if j - k > 64:
                    break
            report.max_lag = max(report.max_lag, t - commits[k].ts)
    by_key = {k: sorted(v, key=lambda w: w[1]) for k, v in writes.items()}
    for pod, began, _end, name, value in reads:
        report.reads += 1
        if _in_windows(windows.get(pod, ()), began):
            continue
        report.reads_judged += 1
        for n, t_inv in by_key.get(name, ()):
            if t_inv > began:
                break
            if n > value:
                lag = began - t_inv
                report.max_read_lag = max(report.max_read_lag, lag)
                if lag > bound:
                    report.stale_reads.append(f"pod {pod} read {name}={value} at {began:.3f}, "
                                              f"{lag:.2f}s after {name}={n} was invalidated")
                break
    return report
