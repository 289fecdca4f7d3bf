"""``python -m benchmarks [--quick] [--only ROW ...] [--redis-url URL] [--dsn DSN]``.

Prints one Markdown table: every row measures hotreload and its baseline in the same run and
shows the ratio. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable

from ._stats import Options, Row, cleanup, render

#: ``--only`` name -> (module, function, what it measures)
GROUPS: dict[str, tuple[str, str, str]] = {
    "publish": ("latency", "run", "Publisher.publish → listener vs raw PUBLISH"),
    "pg": ("daemon_rows", "run_pg_latency", "PostgreSQL UPDATE → daemon → listener"),
    "file": ("daemon_rows", "run_file", "file save → daemon → listener"),
    "fanout": ("fanout", "run", "fan-out to 1/10/100 subscribers"),
    "scale": ("scale", "run", "fan-out to 1,000/5,000 subscribers: one primary vs a cluster"),
    "throughput": ("daemon_rows", "run_throughput", "NOTIFY batches → daemon → subscriber"),
    "l1": ("l1", "run_hits", "L1 hit ns/op"),
    "l1-vs-redis": ("l1", "run_vs_redis", "L1 hit vs Redis GET"),
    "resync": ("resync", "run_resync", "full resync of 10,000 keys"),
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
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    parser.add_argument("--dsn", default=os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    return parser.parse_args(argv)


def run(opts: Options, only: list[str] | None = None,
        progress: Callable[[str], None] | None = None) -> list[Row]:
    """Run the selected row groups; a group that crashes becomes an "error" row."""
    rows: list[Row] = []
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
    return rows


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

    rows = run(opts, args.only, progress)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
