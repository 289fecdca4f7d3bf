"""The transport contract: one set of tests, run on every implementation.

tests/unit/transport/test_contract.py runs them on `MemoryTransport`; and
tests/integration/transport/test_contract.py on `RedisTransport` (RESP2 and RESP3). Each of those
modules provides the ``backend`` fixture: a transport plus raw access to its server, so that a
test can put garbage where the transport expects a hash, or read what a script wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import pytest

from hotreload.errors import BackendError
from hotreload.transport import (
    Commit,
    CommitResult,
    Message,
    Subscription,
    Transport,
)
from hotreload.transport.base import status_key
from hotreload.wire.names import keys_for, legacy_keys_for

T = TypeVar("T")

NS = "app"
E = "1700000000000-0123456789abcdef"
F = "1800000000000-fedcba9876543210"
WAIT = 5.0
SHORT_TTL = 1.0  # seconds: presence and status records that a test watches expire


class Backend(Protocol):
    """A transport under test and raw access to its server."""

    transport: Transport

    def other(self) -> Transport:
        """Another client of the same server."""
        ...

    def listen(self, channel: str) -> Subscription:
        """A subscription to any one channel; its messages come as ``config``."""
        ...

    async def put(self, key: str, value: bytes | Mapping[bytes, bytes] | list[bytes]) -> None:
        """Replace ``key`` with a string, a hash or a list."""
        ...

    async def key_type(self, key: str) -> str: ...

    async def hgetall(self, key: str) -> dict[bytes, bytes]: ...

    async def xadd(self, key: str, version: int, fields: Mapping[bytes, bytes]) -> None: ...

    async def xlen(self, key: str) -> int: ...

    async def delete(self, key: str) -> None: ...

    async def pttl(self, key: str) -> int:
        """Milliseconds to live; -1 no expiry, -2 absent."""
        ...

    async def force_unsubscribe(self, sub: Subscription) -> None:
        """Make the server unsubscribe ``sub`` from the config channel."""
        ...


# ---------------------------------------------------------------------- helpers

def head_fields(epoch: str = E, **extra: str) -> dict[str, str]:
    return {"protocol": "2", "epoch": epoch, "checksum": "c1", "count": "0",
            "updated_at": "1.5", **extra}


def checkpoint(epoch: str = E, version: int = 1, **extra: str) -> dict[str, str | bytes]:
    return {"protocol": "2", "epoch": epoch, "version": str(version), "checksum": "c",
            "count": "0", "settings": b"{}", **extra}


async def create(t: Transport, sets: Mapping[str, str] | None = None, *, epoch: str = E,
                 ns: str = NS, token: tuple[str, ...] | None = None,
                 with_checkpoint: bool = True) -> CommitResult:
    """Start epoch ``epoch`` at version 1 (§7.3) over whatever the head is now."""
    if token is None:
        token = await t.head_token(ns)
    return await t.commit(ns, Commit(
        "new", token, head_fields(epoch), dict(sets or {}), (), b"e1", 1, 100,
        checkpoint=checkpoint(epoch) if with_checkpoint else None))


async def step(t: Transport, version: int, sets: Mapping[str, str] | None = None,
               deletes: tuple[str, ...] = (), *, epoch: str = E, maxlen: int = 100,
               meta: Mapping[str, str] | None = None, ns: str = NS) -> CommitResult:
    """Commit version ``version + 1`` on top of ``version`` (§7.1); its event is e<version+1>."""
    new = version + 1
    return await t.commit(ns, Commit(
        "next", (epoch, str(version)), dict(meta or {"checksum": f"c{new}"}), dict(sets or {}),
        deletes, f"e{new}".encode(), new, maxlen))


async def eventually(get: Callable[[], Awaitable[T]], check: Callable[[T], bool],
                     what: str, timeout: float = 10.0) -> T:
    """Poll ``get()`` until ``check`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await get()
        if check(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.01)


async def expect(sub: Subscription, kind: str, data: bytes | None = None) -> Message:
    msg = await sub.next(WAIT)
    assert msg is not None, f"no message in {WAIT}s, expected {kind}"
    assert msg.kind == kind, msg
    if data is not None:
        assert msg.data == data, msg
    return msg


async def expect_subscribed(sub: Subscription) -> None:
    """Skip what comes before the next ``subscribed`` (other ``unsubscribed`` notices)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msg = await sub.next(WAIT)
        if msg is not None and msg.kind == "subscribed":
            return
        assert msg is None or msg.kind == "unsubscribed", msg
    pytest.fail("no 'subscribed' message")


def keys(backend: Backend) -> Any:
    return keys_for(NS, backend.transport.prefix)


# ---------------------------------------------------------------------- §7.1 / §7.3 commits

async def test_next_on_an_absent_head_is_a_conflict(backend: Backend) -> None:
    result = await step(backend.transport, 0)
    assert result == CommitResult(False, None, None, 0, None)
    assert await backend.key_type(keys(backend).log) == "none"


async def test_new_then_next(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    assert await t.head_token(NS) == ("none", "", "", "")
    created = await create(t, {"a": "1", "b": "2"})
    assert created.ok and created.epoch == E and created.version == 1
    state = await t.load_leaves(NS)
    assert state.leaves == {b"a": b"1", b"b": b"2"}
    assert state.meta[b"version"] == b"1" and state.meta[b"epoch"] == E.encode()
    assert await backend.hgetall(k.checkpoint) == {
        b"protocol": b"2", b"epoch": E.encode(), b"version": b"1", b"checksum": b"c",
        b"count": b"0", b"settings": b"{}"}
    assert await t.head_token(NS) == ("hash", "=2", "=" + E, "=1")

    result = await step(t, 1, {"c": "3", "b": "20"}, ("a",))
    assert result == CommitResult(True, E, 2, 0)
    state = await t.load_leaves(NS)
    assert state.leaves == {b"b": b"20", b"c": b"3"}
    assert state.meta[b"version"] == b"2" and state.meta[b"checksum"] == b"c2"
    head = await t.head(NS)
    assert (head.meta_epoch, head.meta_version, head.meta_checksum) == (E.encode(), b"2", b"c2")
    assert (head.inv_epoch, head.inv_seq) == (None, None)
    assert await t.read_log(NS, 1) == [b"e1", b"e2"]
    assert await t.read_log(NS, 2) == [b"e2"]
    assert await t.read_log(NS, 1, 1) == [b"e1"]
    assert await t.read_log(NS, 1, newest_first=True, count=1) == [b"e2"]


async def test_a_lost_race_changes_nothing_and_reports_the_head(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    await create(t, {"a": "1"})
    assert (await step(t, 1)).ok
    stale = await step(t, 1, {"a": "stale"})
    assert stale == CommitResult(False, E, 2, 0, "2")
    other_epoch = await step(t, 2, {"a": "x"}, epoch=F)
    assert other_epoch == CommitResult(False, E, 2, 0, "2")
    assert (await t.load_leaves(NS)).leaves == {b"a": b"1"}
    assert await t.read_log(NS, 1) == [b"e1", b"e2"]
    # A head of another protocol: same epoch and version, and the protocol found.
    await backend.put(k.meta, {**await backend.hgetall(k.meta), b"protocol": b"1"})
    assert await step(t, 2) == CommitResult(False, E, 2, 0, "1")


async def test_meta_fields_and_deleting_one(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    await create(t)
    await step(t, 1, meta={"checksum": "c2", "canary": '{"id":"x"}', "sig": "s"})
    assert (await backend.hgetall(k.meta))[b"canary"] == b'{"id":"x"}'
    await step(t, 2, meta={"checksum": "c3", "canary": "", "version": "999"})
    meta = await backend.hgetall(k.meta)
    assert b"canary" not in meta and meta[b"sig"] == b"s"
    assert meta[b"version"] == b"3"  # the commit's version, whatever meta says


async def test_racing_commits_never_duplicate_or_skip_versions(backend: Backend) -> None:
    clients = [backend.transport, backend.other()]
    await create(clients[0])
    sub = clients[1].subscription(NS)
    await expect(sub, "subscribed")
    tasks, rounds = 8, 12
    won: list[int] = []
    conflicts = 0

    async def publisher(n: int) -> None:
        nonlocal conflicts
        t = clients[n % 2]
        for i in range(rounds):
            while True:
                head = await t.head(NS)
                version = int(head.meta_version or 0)
                result = await step(t, version, {f"k{n}.{i}": str(version + 1)})
                if result.ok:
                    assert result.version == version + 1
                    won.append(version + 1)
                    break
                conflicts += 1
                assert result.epoch == E and result.version is not None
                assert result.version > version

    await asyncio.gather(*(publisher(n) for n in range(tasks)))
    last = 1 + tasks * rounds
    assert sorted(won) == list(range(2, last + 1))
    assert await backend.transport.read_log(NS, 1) == [f"e{v}".encode()
                                                       for v in range(1, last + 1)]
    state = await backend.transport.load_leaves(NS)
    assert len(state.leaves) == tasks * rounds and state.meta[b"version"] == str(last).encode()
    heard = [(await expect(sub, "config")).data for _ in range(tasks * rounds)]
    assert heard == [f"e{v}".encode() for v in range(2, last + 1)]
    await sub.aclose()


async def test_new_epoch_over_wrong_types_and_garbage(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    await backend.put(k.meta, b"garbage")
    await backend.put(k.leaves, [b"x", b"y"])
    await backend.put(k.checkpoint, b"junk")
    await backend.put(k.log, {b"not": b"a stream"})
    with pytest.raises(BackendError, match="WRONGTYPE"):
        await t.load(NS, max_tail=10)
    with pytest.raises(BackendError, match="WRONGTYPE"):
        await t.load_leaves(NS)
    with pytest.raises(BackendError, match="WRONGTYPE"):
        await step(t, 0)
    token = await t.head_token(NS)
    assert token == ("string", "", "", "")
    created = await create(t, {"a": "1"}, token=token)
    assert created.ok and created.version == 1
    assert [await backend.key_type(x) for x in (k.meta, k.leaves, k.checkpoint, k.log)] == [
        "hash", "hash", "hash", "stream"]
    assert (await t.load_leaves(NS)).leaves == {b"a": b"1"}
    assert await t.read_log(NS, 1) == [b"e1"]

    # A hash head with garbage fields (binary, a version that is no number): the same.
    await backend.put(k.meta, {b"version": b"abc", b"epoch": b"\xff\xfe\x00"})
    token = await t.head_token(NS)
    assert token == ("hash", "", "=\xff\xfe\x00", "=abc")
    assert (await create(t, {"b": "2"}, epoch=F, token=token)).ok
    state = await t.load_leaves(NS)
    assert state.leaves == {b"b": b"2"} and state.meta[b"epoch"] == F.encode()


async def test_new_with_a_stale_token_changes_nothing(backend: Backend) -> None:
    t = backend.transport
    token = await t.head_token(NS)
    assert (await create(t, {"a": "1"}, token=token)).ok
    result = await create(t, {"b": "2"}, epoch=F, token=token)  # another publisher created it
    assert result == CommitResult(False, E, 1, 0, "2")
    await step(t, 1)
    old = await t.head_token(NS)
    await step(t, 2)
    assert (await create(t, {"b": "2"}, epoch=F, token=old)).ok is False
    assert (await t.load_leaves(NS)).leaves == {b"a": b"1"}


async def test_next_over_a_wrong_typed_leaves_or_log_writes_nothing(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    await create(t, {"a": "1"})
    await backend.put(k.leaves, b"garbage")
    with pytest.raises(BackendError, match="WRONGTYPE"):
        await step(t, 1, {"b": "2"})
    assert await backend.xlen(k.log) == 1
    assert (await backend.hgetall(k.meta))[b"version"] == b"1"

    await backend.put(k.leaves, {b"a": b"1"})
    await backend.put(k.log, b"garbage")
    with pytest.raises(BackendError, match="WRONGTYPE"):
        await step(t, 1, {"b": "2"})
    assert await backend.hgetall(k.leaves) == {b"a": b"1"}
    assert (await backend.hgetall(k.meta))[b"version"] == b"1"


async def test_a_log_ahead_of_the_head_is_started_anew(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    await create(t)
    await backend.xadd(k.log, 50, {b"e": b"from a restored backup"})
    assert (await step(t, 1)).ok
    assert await t.read_log(NS, 1) == [b"e2"]
    await backend.xadd(k.log, 3, {b"e": b"same version"})
    assert (await step(t, 2)).ok
    assert await t.read_log(NS, 1) == [b"e3"]


async def test_the_log_keeps_about_log_maxlen_entries(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    await create(t)
    for version in range(1, 300):
        assert (await step(t, version, maxlen=10)).ok
    assert 10 <= await backend.xlen(k.log) < 299
    assert await t.read_log(NS, 1, newest_first=True, count=2) == [b"e300", b"e299"]


async def test_thousands_of_leaves_in_one_commit(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    first = {f"key.{i:05d}": f'"{i}"' for i in range(5000)}
    many = {f"f{i}": "x" * 10 for i in range(3000)}
    token = await t.head_token(NS)
    result = await t.commit(NS, Commit("new", token, head_fields(), first, (), b"e1", 1, 100,
                                       checkpoint={**checkpoint(), **many}))
    assert result.ok
    assert (await t.load_leaves(NS)).leaves == {f.encode(): v.encode() for f, v in first.items()}
    assert len(await backend.hgetall(k.checkpoint)) == len(checkpoint()) + 3000

    second = {f"other.{i:05d}": "1" for i in range(5000)}
    assert (await step(t, 1, second, tuple(first))).ok
    state = await t.load_leaves(NS)
    assert state.leaves == {f.encode(): v.encode() for f, v in second.items()}
    assert await t.write_checkpoint(NS, E, 2, {**checkpoint(version=2), **many})
    assert (await backend.hgetall(k.checkpoint))[b"version"] == b"2"


# ---------------------------------------------------------------------- §8 loads

async def test_load_returns_the_tail_after_the_checkpoint(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    empty = await t.load(NS, max_tail=10)
    assert (empty.meta, empty.checkpoint, empty.tail, empty.inv, empty.legacy) == (
        {}, {}, [], {}, {})
    await create(t, {"a": "1"})
    for version in range(1, 6):
        await step(t, version)
    loaded = await t.load(NS, max_tail=100)
    assert loaded.meta[b"version"] == b"6" and loaded.checkpoint[b"version"] == b"1"
    assert loaded.tail == [b"e2", b"e3", b"e4", b"e5", b"e6"]
    assert loaded.inv == {} and loaded.legacy == {}
    assert (await t.load(NS, max_tail=2)).tail == [b"e2", b"e3", b"e4"]  # max_tail + 1
    assert await t.write_checkpoint(NS, E, 4, checkpoint(version=4))
    assert (await t.load(NS, max_tail=100)).tail == [b"e5", b"e6"]
    assert await t.write_checkpoint(NS, E, 6, checkpoint(version=6))
    assert (await t.load(NS, max_tail=100)).tail == []
    await backend.put(k.checkpoint, {b"epoch": F.encode(), b"version": b"1"})
    assert (await t.load(NS, max_tail=100)).tail == []  # of another epoch: useless


async def test_versions_up_to_the_protocol_limit(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    top = 2**53 - 1
    await create(t)
    await backend.put(k.meta, {**await backend.hgetall(k.meta), b"version": b"%d" % (top - 2)})
    await backend.put(k.checkpoint, {b"epoch": E.encode(), b"version": b"%d" % (top - 2)})
    await backend.delete(k.log)
    assert (await step(t, top - 2)).version == top - 1
    assert (await step(t, top - 1)).version == top
    loaded = await t.load(NS, max_tail=10)
    assert loaded.tail == [b"e%d" % (top - 1), b"e%d" % top]
    assert await t.read_log(NS, top - 1, top) == loaded.tail
    assert await t.write_checkpoint(NS, E, top, checkpoint(version=top))
    assert not await t.write_checkpoint(NS, E, top - 1, checkpoint(version=top - 1))


async def test_load_reads_a_wrong_typed_checkpoint_or_log_as_absent(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    await create(t)
    await step(t, 1)
    await backend.put(k.log, b"garbage")
    loaded = await t.load(NS, max_tail=10)
    assert loaded.checkpoint[b"version"] == b"1" and loaded.tail == []
    await backend.put(k.checkpoint, [b"garbage"])
    loaded = await t.load(NS, max_tail=10)
    assert loaded.checkpoint == {} and loaded.meta[b"version"] == b"2"
    await backend.put(k.inv, b"garbage")
    with pytest.raises(BackendError, match="WRONGTYPE"):
        await t.load(NS, max_tail=10)


async def test_load_is_consistent_while_commits_race(backend: Backend) -> None:
    t = backend.transport
    writer = backend.other()
    await create(t)
    done = asyncio.Event()

    async def publish() -> None:
        version = 1
        while not done.is_set():
            assert (await step(writer, version)).ok
            version += 1

    task = asyncio.create_task(publish())
    try:
        for _ in range(40):
            loaded = await t.load(NS, max_tail=10_000)
            head = int(loaded.meta[b"version"])
            base = int(loaded.checkpoint[b"version"])
            assert loaded.tail == [f"e{v}".encode() for v in range(base + 1, head + 1)]
    finally:
        done.set()
        await task


async def test_load_reads_the_protocol_1_snapshot_only_without_a_head(backend: Backend) -> None:
    t = backend.transport
    old = legacy_keys_for(NS, t.prefix)
    await backend.put(old.snapshot, {b"version": b"7", b"settings": b'{"a":1}'})
    assert (await t.load(NS, max_tail=10)).legacy == {b"version": b"7",
                                                       b"settings": b'{"a":1}'}
    await create(t)
    assert (await t.load(NS, max_tail=10)).legacy == {}


async def test_head_reads_both_heads(backend: Backend) -> None:
    t = backend.transport
    await create(t)
    sent = await t.send_invalidation(NS, expect=None, epoch=F, seq=1, event=b"i1",
                                     log_maxlen=100)
    assert sent.ok
    head = await t.head(NS)
    assert (head.meta_epoch, head.meta_version, head.meta_checksum) == (E.encode(), b"1", b"c1")
    assert (head.inv_epoch, head.inv_seq) == (F.encode(), b"1")
    loaded = await t.load(NS, max_tail=10)
    assert loaded.inv == {b"epoch": F.encode(), b"seq": b"1"}


# ---------------------------------------------------------------------- §7.4 checkpoints

async def test_checkpoint_write_rules(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    assert not await t.write_checkpoint(NS, E, 1, checkpoint())  # no head
    await create(t, with_checkpoint=False)
    assert await backend.key_type(k.checkpoint) == "none"
    assert await t.write_checkpoint(NS, E, 3, checkpoint(version=3, extra="x"))
    assert not await t.write_checkpoint(NS, E, 2, checkpoint(version=2))  # older
    assert await t.write_checkpoint(NS, E, 3, checkpoint(version=3))  # the same version
    assert b"extra" not in await backend.hgetall(k.checkpoint)  # replaced, not merged
    assert not await t.write_checkpoint(NS, F, 9, checkpoint(F, 9))  # another head epoch
    await backend.put(k.checkpoint, {b"epoch": F.encode(), b"version": b"99"})
    assert await t.write_checkpoint(NS, E, 2, checkpoint(version=2))  # another epoch's
    assert (await backend.hgetall(k.checkpoint))[b"version"] == b"2"
    await backend.put(k.checkpoint, {b"epoch": E.encode(), b"version": b"garbage"})
    assert await t.write_checkpoint(NS, E, 2, checkpoint(version=2))


# ---------------------------------------------------------------------- §9 invalidations

async def test_invalidation_create_and_compare_and_set(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    sub = t.subscription(NS)
    await expect(sub, "subscribed")
    first = await t.send_invalidation(NS, expect=None, epoch=E, seq=1, event=b"i1",
                                      log_maxlen=100)
    assert first == CommitResult(True, E, 1, 1)
    again = await t.send_invalidation(NS, expect=None, epoch=F, seq=1, event=b"x",
                                      log_maxlen=100)
    assert again == CommitResult(False, E, 1, 0)
    second = await t.send_invalidation(NS, expect=(E, 1), epoch=E, seq=2, event=b"i2",
                                       log_maxlen=100)
    assert second.ok and second.version == 2
    stale = await t.send_invalidation(NS, expect=(E, 1), epoch=E, seq=2, event=b"x",
                                      log_maxlen=100)
    assert stale == CommitResult(False, E, 2, 0)
    assert await t.read_invalidation_log(NS, 1, 2) == [b"i1", b"i2"]
    assert await t.read_invalidation_log(NS, 2, 2) == [b"i2"]
    await expect(sub, "invalidate", b"i1")
    await expect(sub, "invalidate", b"i2")
    assert await backend.hgetall(k.inv) == {b"epoch": E.encode(), b"seq": b"2"}

    await backend.delete(k.inv)  # lost (a restart): the next invalidator creates it again
    renewed = await t.send_invalidation(NS, expect=None, epoch=F, seq=1, event=b"j1",
                                        log_maxlen=100)
    assert renewed.ok
    assert await t.read_invalidation_log(NS, 1, 10) == [b"j1"]  # the old log is gone
    await sub.aclose()


# ---------------------------------------------------------------------- §11 presence, status

async def test_presence_expires_and_lists(backend: Backend) -> None:
    t = backend.transport
    await create(t)
    written = time.monotonic()
    head = await t.write_presence(NS, "host:1:a", b'{"i":"a"}', SHORT_TTL)
    assert (head.meta_epoch, head.meta_version, head.inv_seq) == (E.encode(), b"1", None)
    await t.write_presence(NS, "host:2:b", b'{"i":"b"}', 30)
    listed = sorted(await t.read_presence(NS))
    if time.monotonic() - written < SHORT_TTL * 0.8:  # else the machine stalled: it may be gone
        assert listed == [b'{"i":"a"}', b'{"i":"b"}']
    await eventually(lambda: t.read_presence(NS), lambda r: r == [b'{"i":"b"}'],
                     "the short-lived record to expire")
    await t.write_presence(NS, "host:2:b", b'{"i":"b2"}', 30)  # a refresh replaces it
    assert await t.read_presence(NS) == [b'{"i":"b2"}']
    await t.remove_presence(NS, "host:2:b")
    assert await t.read_presence(NS) == []


async def test_daemon_status_expires_and_lists(backend: Backend) -> None:
    t = backend.transport
    assert await t.read_statuses() == []
    written = time.monotonic()
    await t.write_status("host:1", b'{"d":1}', SHORT_TTL)
    await t.write_status("host:2", b'{"d":2}', 30)
    listed = sorted(await t.read_statuses())
    if time.monotonic() - written < SHORT_TTL * 0.8:  # else the machine stalled: it may be gone
        assert listed == [b'{"d":1}', b'{"d":2}']
    await eventually(t.read_statuses, lambda r: r == [b'{"d":2}'],
                     "the short-lived status to expire")
    await t.delete_status("host:2")
    assert await t.read_statuses() == []
    assert await backend.key_type(status_key(t.prefix, "host:2")) == "none"


# ---------------------------------------------------------------------- subscriptions

async def test_subscription_follows_drops_and_loses_what_it_missed(backend: Backend) -> None:
    t = backend.transport
    sub = t.subscription(NS)
    assert not sub.connected
    await expect(sub, "subscribed")
    assert sub.connected
    assert await t.subscribers(NS) == 1
    assert (await create(t)).receivers == 1
    await step(t, 1)
    await t.send_invalidation(NS, expect=None, epoch=F, seq=1, event=b"i1", log_maxlen=10)
    await step(t, 2)
    await expect(sub, "config", b"e1")
    await expect(sub, "config", b"e2")
    await expect(sub, "invalidate", b"i1")
    await expect(sub, "config", b"e3")
    await sub.ping()
    await expect(sub, "pong")
    assert await sub.next(0.05) is None

    await sub.drop()
    assert not sub.connected
    assert (await step(t, 3)).receivers == 0  # published while dropped: lost
    await expect(sub, "subscribed")
    assert sub.connected
    await step(t, 4)
    await expect(sub, "config", b"e5")
    await sub.aclose()
    assert not sub.connected
    await eventually(lambda: t.subscribers(NS), lambda n: n == 0, "the subscriber to leave")
    with pytest.raises(BackendError):
        await sub.next(0.01)


async def test_a_ping_on_a_dropped_subscription_reconnects_it(backend: Backend) -> None:
    sub = backend.transport.subscription(NS)
    await expect(sub, "subscribed")
    await sub.drop()
    await sub.ping()
    await expect(sub, "subscribed")
    await expect(sub, "pong")
    await sub.aclose()


async def test_subscription_resubscribes_after_the_server_unsubscribed_it(
        backend: Backend) -> None:
    t = backend.transport
    sub = t.subscription(NS)
    await expect(sub, "subscribed")
    await backend.force_unsubscribe(sub)
    msg = await expect(sub, "unsubscribed")
    assert msg.data == keys(backend).config_channel.encode()
    assert not sub.connected
    await expect_subscribed(sub)
    assert sub.connected
    await create(t)
    await expect(sub, "config", b"e1")
    await sub.aclose()


# ---------------------------------------------------------------------- §13, cache, misc

async def test_retire_legacy(backend: Backend) -> None:
    t = backend.transport
    old = legacy_keys_for(NS, t.prefix)
    listener = backend.listen(old.channel)
    await expect(listener, "subscribed")
    await backend.put(old.snapshot, {b"protocol": b"1", b"version": b"3"})
    await backend.xadd(old.log, 3, {b"e": b"old"})
    assert await t.retire_legacy(NS, b"notice", 3600) == 1
    await expect(listener, "config", b"notice")
    assert await backend.hgetall(old.snapshot) == {b"protocol": b"2", b"version": b"3"}
    for key in (old.snapshot, old.log):
        assert 3_500_000 < await backend.pttl(key) <= 3_600_000
    # Nothing to mark: the notice still goes out, and no key is created.
    other = legacy_keys_for("other", t.prefix)
    assert await t.retire_legacy("other", b"notice", 60) == 0
    assert await backend.key_type(other.snapshot) == "none"
    await listener.aclose()


async def test_cache_store_fences_fills(backend: Backend) -> None:
    t, k = backend.transport, keys(backend)
    store = t.cache_store(NS, "rows")
    value, gens = await store.read("user:1")
    assert (value, gens) == (None, (b"0", b"0"))
    assert await store.fill("user:1", b"v1", gens, 60)
    assert await backend.key_type(k.cache("rows") + "user:1") == "string"
    value, gens = await store.read("user:1")
    assert value == b"v1"
    await store.invalidate(["user:1"])
    assert (await store.read("user:1"))[0] is None
    assert not await store.fill("user:1", b"stale", gens, 60)  # invalidated since the read
    _, gens = await store.read("user:1")
    await store.put("user:1", b"put", 60)
    assert not await store.fill("user:1", b"stale", gens, 60)  # a put fences too
    assert (await store.read("user:1"))[0] == b"put"
    await store.put("user:2", b"x", 60)
    await store.put("other", b"y", 60)
    _, gens = await store.read("user:3")
    assert await store.invalidate_prefix("user:") == 2
    assert not await store.fill("user:3", b"stale", gens, 60)  # the epoch moved
    assert (await store.read("other"))[0] == b"y"
    assert (await store.read("user:2"))[0] is None


async def test_ping_and_describe(backend: Backend) -> None:
    await backend.transport.ping()
    assert "://" in backend.transport.describe()
