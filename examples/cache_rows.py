"""Rows from PostgreSQL through the two-level cache, kept fresh in every pod.

Three "pods" (processes) read ``user:1`` through a `TwoLevelCache` in a loop: L1, else Redis,
else a SELECT. This process then plays the admin tool in another process: it UPDATEs the row
and calls ``cache.invalidate("user:1")``. Every pod drops its L1 copy, and its next read loads
the new row (one of them from PostgreSQL, the others often from the refilled Redis copy).

    python examples/cache_rows.py      # needs Redis and PostgreSQL on 127.0.0.1

REDIS_URL and DATABASE_URL override the addresses. Exit code 0 when every pod saw the update.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import time
import uuid
from typing import Any

import psycopg
import redis
from psycopg import sql

from hotreload import HotReloadConfig, Subscriber
from hotreload.cache import TwoLevelCache

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
PODS = 3


def pod(name: str, namespace: str, table: str, reports: Any, stop: Any) -> None:
    """A service: reads the row through the cache, reports every new value it sees."""
    config = HotReloadConfig.from_url(REDIS_URL, namespace=namespace)
    query = sql.SQL("SELECT id, name, version FROM {} WHERE id = %s").format(sql.Identifier(table))
    sub: Subscriber[Any] = Subscriber(config)
    with psycopg.connect(DATABASE_URL, autocommit=True) as db, sub, \
            TwoLevelCache(sub, name="rows") as cache:

        def load_user(key: str) -> dict[str, Any] | None:  # L3: runs only on a miss
            row = db.execute(query, (int(key.removeprefix("user:")),)).fetchone()
            return None if row is None else {"id": row[0], "name": row[1], "version": row[2]}

        last = None
        while not stop.is_set():
            row = cache.get("user:1", load_user, cache_none=True)
            if row != last:
                reports.put((name, row, cache.stats()["loads"]))
                last = row
            stop.wait(0.005)


def main() -> int:
    namespace = f"cache-rows-{uuid.uuid4().hex[:8]}"
    table = f"cache_rows_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(table)
    with psycopg.connect(DATABASE_URL, autocommit=True) as db:
        db.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, name text, version int)")
                   .format(ident))
        db.execute(sql.SQL("INSERT INTO {} VALUES (1, 'Ada', 1)").format(ident))
    ctx = mp.get_context("spawn")
    reports = ctx.Queue()
    stop = ctx.Event()
    pods = [ctx.Process(target=pod, args=(f"pod-{i}", namespace, table, reports, stop))
            for i in range(PODS)]
    try:
        for p in pods:
            p.start()
        seen = wait_reports(reports, version=1)
        print("every pod reads:", seen)
        admin: Subscriber[Any] = Subscriber(HotReloadConfig.from_url(REDIS_URL,
                                                                     namespace=namespace))
        with psycopg.connect(DATABASE_URL, autocommit=True) as db, admin, \
                TwoLevelCache(admin, name="rows") as cache:
            db.execute(sql.SQL("UPDATE {} SET name = 'Ada Lovelace', version = 2 WHERE id = 1")
                       .format(ident))
            started = time.perf_counter()
            cache.invalidate("user:1")  # L2 deleted, then one event to every pod
            seen = wait_reports(reports, version=2)
            took = time.perf_counter() - started
        print(f"after UPDATE + invalidate, within {took * 1000:.1f} ms every pod reads:", seen)
        return 0
    except TimeoutError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        for p in pods:
            p.join(10)
            if p.is_alive():
                p.kill()
        with psycopg.connect(DATABASE_URL, autocommit=True) as db:
            db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        cleanup_redis(namespace)


def wait_reports(reports: Any, *, version: int, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until every pod has reported a row of ``version``; {pod: (row, loads so far)}."""
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < PODS:
        try:
            name, row, loads = reports.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"only {sorted(seen)} saw version {version}") from None
        if row is not None and row["version"] == version:
            seen[name] = (row["name"], f"loads={loads}")
    return dict(sorted(seen.items()))


def cleanup_redis(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = list(client.scan_iter(match=f"hotreload:{{{namespace}}}:*", count=1000))
        if names:
            client.unlink(*names)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
