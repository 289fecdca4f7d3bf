"""``python -m benchmarks [--quick] [--only ROW ...] [--repeat N] [--redis-url URL] [--dsn DSN]``.

Prints one Markdown table: every row measures hotreload and its baseline in the same run and
shows the ratio. With ``--repeat N`` every selected row is measured N times (round after round,
in this one process) and the table shows, per row, the median of the N ratios, their spread
(min-max) and the medians of the absolute values; "met?" judges the median only. Progress goes
to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable

from ._stats import Options, Row, aggregate, cleanup, render, single_run

#: ``--only`` name -> (module, function, what it measures)
GROUPS: dict[str, tuple[str, str, str]] = {
    "publish": ("latency", "run", "Publisher.publish → listener vs raw PUBLISH"),
    "publish-10k": ("latency", "run_big", "publish → listener, 10,000-key vs 10-key namespace"),
    "pg": ("daemon_rows", "run_pg_latency", "PostgreSQL UPDATE → daemon → listener"),
    "file": ("daemon_rows", "run_file", "file save → daemon → listener"),
    "fanout": ("fanout", "run", "fan-out to 1/10/100 subscribers"),
    "scale": ("scale", "run", "fan-out to 1,000/5,000 subscribers: one primary vs a cluster"),
    "throughput": ("daemon_rows", "run_throughput", "NOTIFY batches → daemon → subscriber"),
    "l1": ("l1", "run_hits", "L1 hit ns/op"),
    "l1-vs-redis": ("l1", "run_vs_redis", "L1 hit vs Redis GET"),
    "resync": ("resync", "run_resync", "full resync and cold start on 10,000 keys"),
    "rss": ("resync", "run_rss", "subscriber RSS at 10,000 keys"),
    "broadcaster": ("peers", "run_broadcaster", "peer: encode/broadcaster"),
    "cashews": ("peers", "run_cashews", "peer: cashews client-side cache"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (the smoke test): checks that rows run, not speed")
    parser.add_argument("--only", nargs="+", choices=sorted(GROUPS), metavar="ROW",
                        help="run only these rows: " + ", ".join(GROUPS))
    parser.add_argument("--repeat", type=_positive, default=1, metavar="N",
                        help="measure every selected row N times in this run and report the "
                        "median ratio and its spread (met? judges the median)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    parser.add_argument("--dsn", default=os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(opts: Options, only: list[str] | None = None,
        progress: Callable[[str], None] | None = None, repeat: int = 1) -> list[Row]:
    """Run the selected row groups ``repeat`` times (round after round); a group that crashes
    becomes an "error" row. One run: its rows; more: one aggregated row per row."""
    runs: list[list[Row]] = []
    for i in range(repeat):
        rows: list[Row] = []
        runs.append(rows)
        if progress and repeat > 1:
            progress(f"[benchmarks] run {i + 1} of {repeat}")
        try:
            _run_groups(opts, only, progress, rows)
        finally:
            try:
                dropped = cleanup(opts.redis_url)
            except Exception as exc:  # the results matter more than the tidy-up
                dropped = 0
                if progress:
                    progress(f"[benchmarks] cleanup failed: {exc}")
            if progress:
                progress(f"[benchmarks] deleted {dropped} Redis keys this run created")
    return single_run(runs[0]) if repeat == 1 else aggregate(runs)


def _run_groups(opts: Options, only: list[str] | None,
                progress: Callable[[str], None] | None, rows: list[Row]) -> None:
    for name in only or list(GROUPS):
        module_name, func_name, what = GROUPS[name]
        if progress:
            progress(f"[benchmarks] {name}: {what} ...")
        started = time.monotonic()
        try:
            module = importlib.import_module(f"{__package__}.{module_name}")
            got = getattr(module, func_name)(opts)
        except Exception as exc:
            if progress:
                progress(traceback.format_exc())
            got = [Row(what, f"error: {type(exc).__name__}: {exc}"[:200], "", "", "", "n/a",
                       "", name)]
        for row in got:
            row.group = row.group or name
        rows.extend(got)
        if progress:
            progress(f"[benchmarks] {name}: done in {time.monotonic() - started:.1f}s")
            progress(render(got))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = Options(redis_url=args.redis_url, dsn=args.dsn, quick=args.quick)

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    rows = run(opts, args.only, progress, args.repeat)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
