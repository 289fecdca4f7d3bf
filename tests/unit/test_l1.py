"""The pure parts of the cache: the L1 map, single-flight/fence/echo bookkeeping, serializers."""

from __future__ import annotations

import threading

import pytest

from hotreload.cache.l1 import L1Cache
from hotreload.cache.serializers import JsonSerializer, Serializer
from hotreload.cache.state import Echoes, Fences, Flights, Scope
from hotreload.transport._redis_cache import glob_escape


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


MISS = object()


def test_get_set_and_stats() -> None:
    c = L1Cache(10)
    assert c.get("a") is None
    c.set("a", 1)
    c.set("n", None)
    assert c.get("a") == 1
    assert c.get("n", MISS) is None  # a cached None is told apart with a sentinel
    assert c.get("x", MISS) is MISS
    assert "a" in c
    assert len(c) == 2
    assert c.stats() == {"hits": 2, "misses": 2, "evictions": 0, "invalidations": 0,
                         "size": 2, "max_entries": 10}


def test_ttl_default_and_per_entry() -> None:
    clock = Clock()
    c = L1Cache(10, ttl=5.0, clock=clock)
    c.set("a", 1)
    c.set("b", 2, ttl=1.0)
    clock.now += 1.0
    assert c.get("b", MISS) is MISS  # expired exactly at its deadline
    assert c.get("a") == 1
    assert "b" not in c
    clock.now += 4.0
    assert c.get("a", MISS) is MISS
    c.set("a", 3)
    assert c.get("a") == 3


def test_disabled_serves_nothing_but_keeps_entries() -> None:
    c = L1Cache(10)
    c.set("a", 1)
    c.enabled = False
    assert c.get("a", MISS) is MISS
    c.enabled = True
    assert c.get("a") == 1


def test_bounded_with_second_chance() -> None:
    c = L1Cache(128)
    for i in range(128):
        c.set(i, i)
    hot = range(0, 128, 2)
    for i in hot:
        assert c.get(i) == i
    for i in range(128, 160):
        c.set(i, i)
        assert len(c) <= 128
    assert all(i in c for i in hot), "referenced entries got a second chance"
    assert c.evictions >= 32
    assert len(c) <= 128


def test_everything_referenced_still_evicts() -> None:
    c = L1Cache(64)
    for i in range(64):
        c.set(i, i)
        c.get(i)
    c.set("new", 1)
    assert len(c) <= 64
    assert "new" in c
    assert c.evictions >= 1


def test_expired_entries_go_first() -> None:
    clock = Clock()
    c = L1Cache(4, clock=clock)
    c.set("short", 1, ttl=1.0)
    for k in "abc":
        c.set(k, k)
        c.get(k)
    c.get("short")
    clock.now += 2.0
    c.set("d", "d")
    assert "short" not in c
    assert all(k in c for k in "abcd")


def test_invalidate_prefix_clear() -> None:
    c = L1Cache(10)
    for k in ("user:1", "user:2", "order:1"):
        c.set(k, k)
    c.set(42, "not a string key")
    assert c.invalidate("user:1") is True
    assert c.invalidate("user:1") is False
    assert c.invalidate_prefix("user:") == 1
    assert c.invalidate_prefix("") == 1  # only string keys match a prefix
    assert 42 in c
    assert c.clear() == 1
    assert len(c) == 0
    assert c.invalidations == 4


def test_validation() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        L1Cache(0)
    with pytest.raises(ValueError, match="ttl"):
        L1Cache(10, ttl=0)


def test_reads_from_threads_while_one_writes() -> None:
    c = L1Cache(256)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                for i in range(512):
                    c.get(i)
        except BaseException as exc:  # pragma: no cover - the failure we look for
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(20_000):
        c.set(i % 512, i)
        if i % 1000 == 0:
            c.invalidate_prefix("x")
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert len(c) <= 256


# ---------------------------------------------------------------------- bookkeeping


def test_scope_covers() -> None:
    assert Scope(("a",)).covers("a")
    assert not Scope(("a",)).covers("ab")
    assert Scope(prefixes=("a",)).covers("ab")
    assert Scope(all=True).covers("anything")
    assert not Scope().covers("a")


def test_flights_spoil() -> None:
    f = Flights()
    a, ab, b = f.start("a"), f.start("ab"), f.start("b")
    assert f.get("a") is a
    assert f.spoil(Scope(("a",))) == 1
    assert a.stale
    assert f.get("a") is None  # a new reader starts a new load
    assert f.spoil(Scope(prefixes=("a",))) == 1
    assert ab.stale
    assert not b.stale
    f.finish(a)  # finishing a spoilt flight does not remove a newer one
    newer = f.start("a")
    f.finish(a)
    assert f.get("a") is newer
    assert f.spoil(Scope(all=True)) == 2
    assert len(f) == 0


def test_fences() -> None:
    f = Fences()
    s = Scope(prefixes=("u:",))
    f.add(s)
    assert f.covers("u:1")
    assert not f.covers("v:1")
    f.remove(s)
    assert not f.covers("u:1")


def test_echoes_by_version_and_by_content() -> None:
    e = Echoes("host:1/cache:c/x")
    s = Scope(("k",))
    pending = e.begin(s)
    e.end(pending, 5)
    assert not e.is_echo("someone-else", 5, s)
    assert e.is_echo("host:1/cache:c/x", 5, s)
    assert not e.is_echo("host:1/cache:c/x", 5, s)  # consumed
    # The echo can overtake the publish's reply: matched by content while pending.
    pending = e.begin(s)
    assert e.is_echo("host:1/cache:c/x", 6, s)
    e.end(pending, 6)
    assert not e.is_echo("host:1/cache:c/x", 6, s)
    pending = e.begin(s)
    assert not e.is_echo("host:1/cache:c/x", 7, Scope(("other",)))
    e.end(pending, None)  # the publish failed


def test_echo_memory_is_bounded() -> None:
    e = Echoes("o")
    for v in range(5000):
        e.end(e.begin(Scope(("k",))), v)
    assert not e.is_echo("o", 0, Scope(("k",)))
    assert e.is_echo("o", 4999, Scope(("k",)))


def test_json_serializer() -> None:
    s: Serializer = JsonSerializer()
    assert isinstance(s, Serializer)
    for value in (None, 1, "é", [1, {"a": None}], {"x": 1.5}):
        assert s.loads(s.dumps(value)) == value
    assert s.dumps({"é": 1}) == '{"é":1}'.encode()
    with pytest.raises(ValueError, match="JSON"):
        s.dumps(float("nan"))
    with pytest.raises(TypeError):
        s.dumps(object())


def test_glob_escape() -> None:
    assert glob_escape("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
