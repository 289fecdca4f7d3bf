"""Rows: L1 hit cost (``Subscriber.get``, ``TwoLevelCache.get``) and L1 hit vs a Redis GET."""

from __future__ import annotations

import asyncio
import importlib.util
import time
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._stats import (
    NOT_AVAILABLE,
    Metric,
    Options,
    Row,
    fmt_ns,
    fmt_ratio,
    percentile,
    ratio,
    unavailable,
    unique,
    verdict,
)

KEYS = 100
KEY = "group.key_42"


def ns_per_op(stmt: str, env: dict[str, Any], number: int, repeat: int = 7) -> float:
    """Best-of-``repeat`` timeit, in ns per call (includes the timeit loop, ~10 ns)."""
    best = min(timeit.repeat(stmt, globals=env, number=number, repeat=repeat))
    return best / number * 1e9


def _ns0(value: float) -> str:
    return f"{value:.0f}"


def cache_available() -> bool:
    try:
        return importlib.util.find_spec("hotreload.cache") is not None
    except ImportError:
        return False


def _document() -> dict[str, Any]:
    return {"group": {f"key_{i}": f"value-{i}" for i in range(KEYS)}}


@contextmanager
def subscriber(opts: Options) -> Iterator[Any]:
    """A started sync `Subscriber` on a fresh namespace holding ``_document()``."""
    from hotreload import HotReloadConfig, Publisher, Subscriber

    config = HotReloadConfig.from_url(opts.redis_url)
    ns = unique("bench-l1")
    with Publisher(config, namespace=ns) as pub:
        pub.replace(_document())
    sub: Any = Subscriber(config, namespace=ns)
    sub.start()
    try:
        yield sub
    finally:
        sub.close()


@contextmanager
def two_level_cache(sub: Any) -> Iterator[Any]:
    from hotreload.cache import TwoLevelCache  # type: ignore[import-not-found,unused-ignore]

    cache = TwoLevelCache(sub, name=unique("bench-cache"), max_entries=10_000, ttl=300)
    try:
        yield cache
    finally:
        close = getattr(cache, "close", None)
        if callable(close):
            close()


def _loader(key: str) -> str:
    return f"loaded-{key}"


def run_hits(opts: Options) -> list[Row]:
    from cachetools import TTLCache

    number = opts.n(1_000_000, 20_000)
    rows: list[Row] = []
    with subscriber(opts) as sub:
        plain = dict(sub.core.get.__self__) if hasattr(sub.core.get, "__self__") else {}
        plain = plain or {f"group.key_{i}": f"value-{i}" for i in range(KEYS)}
        env: dict[str, Any] = {"sub": sub, "d": plain, "k": KEY}
        if sub.get(KEY) != plain.get(KEY):
            raise RuntimeError("subscriber does not hold the benchmark document")
        base = ns_per_op("d.get(k)", env, number)
        hr = ns_per_op("sub.get(k)", env, number)
        r = ratio(hr, base)
        rows.append(Row("L1 hit: `Subscriber.get(key)` (settings)", f"{hr:.0f} ns/op",
                        f"`dict.get` {base:.0f} ns/op", fmt_ratio(r), "≤ 2x dict.get",
                        verdict(r <= 2.0), f"timeit best of 7 x {number:,}", "l1",
                        Metric(r, {"hr": hr}, {"dict": base}, "{hr} ns/op",
                               "`dict.get` {dict} ns/op", fmt=_ns0,
                               judge=lambda value, _: value <= 2.0)))

        ttl: TTLCache[str, str] = TTLCache(maxsize=10_000, ttl=300)
        ttl[KEY] = "v"
        env.update(ttl=ttl)
        if not cache_available():
            rows.append(unavailable("L1 hit: `TwoLevelCache.get(key, loader)`", NOT_AVAILABLE,
                                    "≤ 150 ns and ≥ 5x faster than TTLCache", "l1"))
            rows.append(unavailable("L1 hit: `await AsyncTwoLevelCache.get`", NOT_AVAILABLE,
                                    "report", "l1"))
            return rows
        with two_level_cache(sub) as cache:
            cache.get(KEY, _loader)
            env.update(cache=cache, loader=_loader)
            base_ttl = ns_per_op("ttl.get(k)", env, number)
            base_dict = ns_per_op("d.get(k)", env, number)
            hr = ns_per_op("cache.get(k, loader)", env, number)
            speedup = ratio(base_ttl, hr)
            rows.append(Row("L1 hit: `TwoLevelCache.get(key, loader)`", f"{hr:.0f} ns/op",
                            f"cachetools `TTLCache.get` {base_ttl:.0f} ns/op; "
                            f"`dict.get` {base_dict:.0f} ns/op",
                            f"{fmt_ratio(speedup)} faster than TTLCache "
                            f"({fmt_ratio(ratio(hr, base_dict))} dict.get)",
                            "≤ 150 ns and ≥ 5x faster than TTLCache",
                            verdict(hr <= 150 and speedup >= 5),
                            f"timeit best of 7 x {number:,}", "l1",
                            Metric(speedup, {"hr": hr}, {"ttl": base_ttl, "dict": base_dict},
                                   "{hr} ns/op", "cachetools `TTLCache.get` {ttl} ns/op; "
                                   "`dict.get` {dict} ns/op",
                                   "{ratio} faster than TTLCache ({dict} dict.get)",
                                   {"dict": ratio(hr, base_dict)}, fmt=_ns0,
                                   judge=lambda value, v: v["hr"] <= 150 and value >= 5)))
        rows.extend(_async_cache_hit(opts, number // 4))
    return rows


def _async_cache_hit(opts: Options, number: int) -> list[Row]:
    """``await AsyncTwoLevelCache.get`` hit vs awaiting a trivial coroutine returning a dict hit."""
    try:
        from hotreload.cache import (  # type: ignore[import-not-found,unused-ignore]
            AsyncTwoLevelCache,
        )
    except ImportError:
        return [unavailable("L1 hit: `await AsyncTwoLevelCache.get`", NOT_AVAILABLE, "report",
                            "l1")]
    from hotreload import AsyncPublisher, AsyncSubscriber, HotReloadConfig

    async def main() -> Row:
        config = HotReloadConfig.from_url(opts.redis_url)
        ns = unique("bench-l1a")
        async with AsyncPublisher(config, namespace=ns) as pub:
            await pub.replace(_document())
        sub: Any = AsyncSubscriber(config, namespace=ns)
        await sub.start()
        try:
            cache = AsyncTwoLevelCache(sub, name=unique("bench-acache"), max_entries=10_000,
                                       ttl=300)

            async def aloader(key: str) -> str:
                return f"loaded-{key}"

            await cache.get(KEY, aloader)
            d = {KEY: "v"}

            async def dict_get(key: str) -> Any:
                return d.get(key)

            async def loop_cache() -> int:
                t0 = time.perf_counter_ns()
                for _ in range(number):
                    await cache.get(KEY, aloader)
                return time.perf_counter_ns() - t0

            async def loop_dict() -> int:
                t0 = time.perf_counter_ns()
                for _ in range(number):
                    await dict_get(KEY)
                return time.perf_counter_ns() - t0

            hr = min([await loop_cache() for _ in range(5)]) / number
            base = min([await loop_dict() for _ in range(5)]) / number
            aclose = getattr(cache, "aclose", None)
            if callable(aclose):
                await aclose()
        finally:
            await sub.aclose()
        return Row("L1 hit: `await AsyncTwoLevelCache.get(key, loader)`", f"{hr:.0f} ns/op",
                   f"`await` of a coroutine doing `dict.get` {base:.0f} ns/op",
                   fmt_ratio(ratio(hr, base)), "report", "n/a",
                   f"best of 5 x {number:,}", "l1",
                   Metric(ratio(hr, base), {"hr": hr}, {"base": base}, "{hr} ns/op",
                          "`await` of a coroutine doing `dict.get` {base} ns/op", fmt=_ns0))

    return [asyncio.run(main())]


def run_vs_redis(opts: Options) -> list[Row]:
    import redis

    samples_n = opts.n(5_000, 200)
    number = opts.n(1_000_000, 20_000)
    client = redis.Redis.from_url(opts.redis_url)
    key = unique("bench:get")
    client.set(key, "x" * 64, ex=600)
    try:
        for _ in range(100):
            client.get(key)
        samples = []
        for _ in range(samples_n):
            t0 = time.perf_counter_ns()
            client.get(key)
            samples.append(time.perf_counter_ns() - t0)
    finally:
        client.delete(key)
        client.close()
    get_p50 = percentile(samples, 50)
    rows: list[Row] = []
    with subscriber(opts) as sub:
        env: dict[str, Any] = {"sub": sub, "k": KEY}
        hits = [("`Subscriber.get`", ns_per_op("sub.get(k)", env, number))]
        if cache_available():
            with two_level_cache(sub) as cache:
                cache.get(KEY, _loader)
                env.update(cache=cache, loader=_loader)
                hits.append(("`TwoLevelCache.get`", ns_per_op("cache.get(k, loader)", env,
                                                                number)))
        else:
            rows.append(unavailable("L1 hit (`TwoLevelCache.get`) vs Redis GET", NOT_AVAILABLE,
                                    "≥ 300x faster", "l1-vs-redis"))
    get_p99 = percentile(samples, 99)
    for label, hit in hits:
        speedup = ratio(get_p50, hit)
        rows.append(Row(f"L1 hit ({label}) vs Redis GET round trip", f"{hit:.0f} ns/op",
                        f"redis-py sync GET p50 {fmt_ns(get_p50)} (p99 {fmt_ns(get_p99)})",
                        f"{fmt_ratio(speedup)} faster", "≥ 300x faster",
                        verdict(speedup >= 300), f"GET n={samples_n}", "l1-vs-redis",
                        Metric(speedup, {"hr": hit}, {"p50": get_p50, "p99": get_p99},
                               "{hr}/op", "redis-py sync GET p50 {p50} (p99 {p99})",
                               "{ratio} faster", judge=lambda value, _: value >= 300)))
    return rows
