"""The L1 hit-path measurements quoted in docs/cache.md (timeit, best of N repeats).

    PYTHONPATH=. python docs/l1_timeit.py [--number 1000000] [--no-redis]

Every row looks up one present key of a 1,000-entry map. The "design" rows are the candidate
hit paths that were compared before choosing the one `L1Cache` uses.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import timeit
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from hotreload.cache.l1 import L1Cache

N_KEYS = 1000
KEY = "k500"
mono = time.monotonic


def _design_rows() -> dict[str, Callable[..., Any]]:
    far = mono() + 1e9
    plain = {f"k{i}": i for i in range(N_KEYS)}
    tuples = {f"k{i}": (i, far) for i in range(N_KEYS)}
    lists = {f"k{i}": [i, far, False] for i in range(N_KEYS)}
    ordered = OrderedDict(tuples)
    counter = [0]

    def tuple_ttl(key: str = KEY, get: Any = tuples.get) -> Any:
        e = get(key)
        return e[0] if e is not None and e[1] > mono() else None

    def clock_bit(key: str = KEY, get: Any = lists.get) -> Any:
        e = get(key)
        if e is not None and e[1] > mono():
            e[2] = True
            return e[0]
        return None

    def move_to_end(key: str = KEY, d: Any = ordered) -> Any:
        e = d.get(key)
        if e is not None and e[1] > mono():
            d.move_to_end(key)
            return e[0]
        return None

    def pop_reinsert(key: str = KEY, d: Any = tuples) -> Any:
        e = d.pop(key, None)
        if e is not None:
            d[key] = e
            if e[1] > mono():
                return e[0]
        return None

    lock = threading.Lock()

    def clock_bit_locked(key: str = KEY, get: Any = lists.get) -> Any:
        with lock:
            e = get(key)
            if e is not None and e[1] > mono():
                e[2] = True
                return e[0]
        return None

    def clock_bit_counted(key: str = KEY, get: Any = lists.get) -> Any:
        e = get(key)
        if e is not None and e[1] > mono():
            e[2] = True
            counter[0] += 1
            return e[0]
        return None

    return {
        "dict.get (no TTL, no LRU)": plain.get,
        "design: (value, expires) tuple, FIFO": tuple_ttl,
        "design: [value, expires, ref] CLOCK bit": clock_bit,
        "design: CLOCK bit + hits counter": clock_bit_counted,
        "design: CLOCK bit under a threading.Lock": clock_bit_locked,
        "design: OrderedDict.move_to_end (exact LRU)": move_to_end,
        "design: dict pop + re-insert (exact LRU)": pop_reinsert,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--number", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()

    def ns_per_op(fn: Callable[..., Any], *fn_args: Any, number: int | None = None) -> float:
        """``fn(*fn_args)`` per call: the same single call for every row."""
        n = number or args.number
        stmt = "fn(" + ", ".join(f"a{i}" for i in range(len(fn_args))) + ")"
        env = {"fn": fn, **{f"a{i}": a for i, a in enumerate(fn_args)}}
        return min(timeit.repeat(stmt, globals=env, number=n, repeat=args.repeat)) / n * 1e9

    rows = {"time.monotonic()": ns_per_op(mono)}
    rows.update({name: ns_per_op(fn, KEY) for name, fn in _design_rows().items()})
    l1 = L1Cache(10_000)
    for i in range(N_KEYS):
        l1.set(f"k{i}", i)
    rows["L1Cache.get"] = ns_per_op(l1.get, KEY)
    try:
        from cachetools import TTLCache
    except ImportError:  # pragma: no cover - cachetools is a bench extra
        pass
    else:
        ttl_cache: TTLCache[str, int] = TTLCache(maxsize=10_000, ttl=600)
        for i in range(N_KEYS):
            ttl_cache[f"k{i}"] = i
        rows["cachetools TTLCache.get"] = ns_per_op(ttl_cache.get, KEY)
    if not args.no_redis:
        rows.update(_redis_rows(ns_per_op))
    width = max(map(len, rows))
    base = rows["dict.get (no TTL, no LRU)"]
    ttl = rows.get("cachetools TTLCache.get", float("nan"))
    print(f"| {'row':<{width}} | ns/op | vs dict.get | TTLCache.get / row |")
    print(f"|{'-' * (width + 2)}|------:|------:|------:|")
    for name, ns in rows.items():
        print(f"| {name:<{width}} | {ns:.1f} | {ns / base:.1f}x | {ttl / ns:.1f}x |")


def _redis_rows(ns_per_op: Callable[..., float]) -> dict[str, float]:
    import redis

    from hotreload import HotReloadConfig, Subscriber
    from hotreload.cache import TwoLevelCache

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    ns = f"l1-timeit-{os.getpid()}"
    out: dict[str, float] = {}
    sub: Subscriber[Any] = Subscriber(HotReloadConfig.from_url(url, namespace=ns))
    with sub, TwoLevelCache(sub, name="bench") as cache:
        deadline = time.monotonic() + 10
        while not cache.trusted and time.monotonic() < deadline:
            time.sleep(0.01)
        cache.get(KEY, lambda key: 1)

        def loader(key: str) -> int:
            return 1

        out["TwoLevelCache.get (L1 hit, sync)"] = ns_per_op(cache.get, KEY, loader)
        core = cache.core

        async def hits(n: int) -> None:
            for _ in range(n):
                await core.get(KEY, loader)

        n = 100_000
        t0 = time.perf_counter()
        sub.run_coroutine(hits(n))
        out["AsyncTwoLevelCache.get (L1 hit, awaited)"] = (time.perf_counter() - t0) / n * 1e9
        client = redis.Redis.from_url(url)
        client.set(f"{ns}:x", b"1")
        out["redis-py GET round trip (sync)"] = ns_per_op(client.get, f"{ns}:x", number=5000)
        client.delete(f"{ns}:x")
        names = list(client.scan_iter(match=f"hotreload:{{{ns}}}:*"))
        if names:
            client.unlink(*names)
        client.close()
    return out


if __name__ == "__main__":
    main()
