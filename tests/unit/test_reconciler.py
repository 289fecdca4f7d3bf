"""The reconciler's logic, against a fake publisher (and the memory transport for idempotency)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import redis.exceptions

from hotreload.config import HotReloadConfig
from hotreload.daemon.metrics import Metrics
from hotreload.daemon.pending import MAX_PENDING_KEYS
from hotreload.daemon.reconciler import Reconciler
from hotreload.daemon.status import describe_daemon
from hotreload.errors import BackendError, ProtocolError
from hotreload.publisher import AsyncPublisher, PublishResult
from hotreload.transport import MemoryServer, MemoryTransport


class FakePublisher:
    """Records calls; ``up`` False makes every call fail like an unreachable Redis;
    namespaces in ``broken`` fail like a wrong-typed key; ``gate`` (if set) holds publishes."""

    def __init__(self) -> None:
        self.up = True
        self.version_ = 0
        self.published: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.attempts: dict[str, int] = {}
        self.broken: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    def _check(self, namespace: str | None = None) -> None:
        if not self.up:
            raise BackendError("publishing: Connection refused") from (
                redis.exceptions.ConnectionError("Connection refused"))
        if namespace is not None:
            self.attempts[namespace] = self.attempts.get(namespace, 0) + 1
        if namespace in self.broken:
            raise BackendError(f"publishing to {namespace!r}: WRONGTYPE") from (
                redis.exceptions.ResponseError("WRONGTYPE Operation against a key"))

    async def _hold(self) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()

    async def ping(self) -> bool:
        self._check()
        return True

    async def replace(self, document: Mapping[str, Any], *, namespace: str | None = None,
                      source: str | None = None) -> PublishResult:
        self._check(namespace)
        await self._hold()
        assert namespace is not None
        if self.published.get(namespace) == dict(document):
            return PublishResult(namespace, self.version_, False)
        self.published[namespace] = dict(document)
        self.version_ += 1
        self.calls.append(("config", namespace, dict(document)))
        return PublishResult(namespace, self.version_, True)

    async def invalidate(self, keys: Sequence[str] = (), prefixes: Sequence[str] = (), *,
                         everything: bool = False, namespace: str | None = None,
                         source: str | None = None) -> PublishResult:
        self._check(namespace)
        assert namespace is not None
        self.version_ += 1
        self.calls.append(("invalidate", namespace, (tuple(keys), tuple(prefixes), everything)))
        return PublishResult(namespace, self.version_, True)

    async def version(self, namespace: str | None = None) -> int:
        self._check()
        return self.version_


async def wait_until(cond: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 - polling a condition with a deadline
            await asyncio.sleep(0.005)


@pytest.fixture
async def fake() -> Any:
    pub = FakePublisher()
    metrics = Metrics()
    rec = Reconciler(pub, metrics, ping=pub.ping, backoff_max=0.05, probe_interval=0.02)
    task = asyncio.create_task(rec.run())
    try:
        yield pub, rec, metrics
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_publishes_only_while_the_gate_is_open(fake: Any) -> None:
    pub, rec, _ = fake
    await rec.desired("app", {"a": 1}, source="files")
    await wait_until(lambda: rec.redis_up)
    await asyncio.sleep(0.05)  # give a wrongly open gate the chance to publish
    assert pub.calls == []
    rec.open_gate()
    await wait_until(lambda: pub.calls)
    assert pub.calls == [("config", "app", {"a": 1})]


async def test_repeated_state_publishes_nothing(fake: Any) -> None:
    pub, rec, metrics = fake
    rec.open_gate()
    for _ in range(3):
        await rec.desired("app", {"a": 1}, source="files")
        await wait_until(lambda: not rec.pending())
    assert len(pub.calls) == 1
    assert rec.versions == {"app": 1}
    assert sample(metrics, "hotreload_events_published_total", source="files",
                  kind="config") == 1
    assert sample(metrics, "hotreload_namespace_version", namespace="app") == 1


async def test_outage_coalesces_to_the_latest_state(
    fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pub, rec, metrics = fake
    caplog.set_level(logging.DEBUG, logger="hotreload.daemon.reconciler")
    rec.open_gate()
    await rec.desired("app", {"n": 0}, source="files")
    await wait_until(lambda: pub.calls)
    pub.up = False
    for n in range(1, 6):
        await rec.desired("app", {"n": n}, source="files")
        await rec.invalidate("app", [f"k{n}"], source="pg")
    await wait_until(lambda: rec.redis_up is False)
    await asyncio.sleep(0.2)  # several retries while down
    pub.up = True
    await wait_until(lambda: rec.redis_up and not rec.pending())
    assert pub.calls == [
        ("config", "app", {"n": 0}),
        ("config", "app", {"n": 5}),
        ("invalidate", "app", (("k1", "k2", "k3", "k4", "k5"), (), False)),
    ]
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert actions.count("redis_down") == 1
    assert actions.count("redis_up") == 1
    assert sample(metrics, "hotreload_redis_reconnects_total") == 1
    assert sample(metrics, "hotreload_redis_up") == 1


async def test_recovery_asks_for_a_reconcile() -> None:
    pub = FakePublisher()
    asked: list[bool] = []
    rec = Reconciler(pub, Metrics(), ping=pub.ping, backoff_max=0.05, probe_interval=0.02,
                     on_reconnect=lambda: asked.append(True))
    pub.up = False
    assert not await rec.probe()
    pub.up = True
    assert await rec.probe()
    assert asked == [True]
    assert await rec.probe()
    assert asked == [True]  # only on a transition


async def test_invalidations_merge_and_cap() -> None:
    pub = FakePublisher()
    rec = Reconciler(pub, Metrics(), ping=pub.ping, backoff_max=0.05)
    await rec.invalidate("app", ["a"], ["p."], source="pg")
    await rec.invalidate("app", ["b", "a"], source="pg")
    await rec.invalidate("app", source="pg")  # nothing: ignored
    assert rec.pending() == ["app"]
    await rec.invalidate("big", [f"k{i}" for i in range(MAX_PENDING_KEYS + 1)], source="pg")
    await rec.invalidate("big", ["more"], source="pg")
    await rec.probe()
    rec.open_gate()
    task = asyncio.create_task(rec.run())
    try:
        await wait_until(lambda: not rec.pending())
    finally:
        task.cancel()
    assert sorted(pub.calls) == [
        ("invalidate", "app", (("a", "b"), ("p.",), False)),
        ("invalidate", "big", ((), (), True)),
    ]


async def test_rejections_are_counted_once_per_problem(caplog: pytest.LogCaptureFixture) -> None:
    pub = FakePublisher()
    metrics = Metrics()
    rec = Reconciler(pub, metrics, ping=pub.ping, backoff_max=0.05)
    rec.rejected("file:a.yaml", "yaml", "a.yaml:3: mapping values are not allowed")
    rec.rejected("file:a.yaml", "yaml", "a.yaml:3: mapping values are not allowed")
    rec.rejected("file:a.yaml", "schema", "a.yaml: port: not an int")
    state = rec.sources["file:a.yaml"]
    assert state.rejections == {"yaml": 1, "schema": 1}
    assert state.last_error is not None
    assert state.last_error["reason"] == "schema"
    assert sample(metrics, "hotreload_rejections_total", source="file:a.yaml",
                  reason="yaml") == 1
    assert sample(metrics, "hotreload_source_up", source="file:a.yaml") == 0
    rec.accepted("file:a.yaml")
    assert state.last_error is None
    assert sample(metrics, "hotreload_source_up", source="file:a.yaml") == 1
    assert [getattr(r, "action", None) for r in caplog.records].count("rejected") == 2


async def test_bad_documents_are_rejected_not_published(fake: Any) -> None:
    pub, rec, _ = fake
    rec.open_gate()
    await rec.desired("app", {"x": float("nan")}, source="files")
    await rec.desired("bad ns", {"x": 1}, source="files")
    deep: Any = []
    for _ in range(33):  # a leaf nests at most 32 levels (docs/protocol.md §2)
        deep = [deep]
    await rec.desired("app", {"x": deep}, source="files")
    assert "nests more than 32 levels" in rec.sources["files"].last_error["detail"]
    long_key = {"k" * 513: 1}  # a key has at most 512 bytes
    await rec.desired("app", long_key, source="files")
    assert rec.pending() == []
    assert rec.sources["files"].rejections == {"document": 4}
    assert pub.calls == []


async def test_publish_errors_other_than_outages_are_rejections(fake: Any) -> None:
    pub, rec, _ = fake

    async def too_big(*args: Any, **kwargs: Any) -> PublishResult:
        raise ProtocolError("event of 2000000 bytes exceeds security.max_message_bytes")

    pub.replace = too_big
    rec.open_gate()
    await rec.desired("app", {"a": 1}, source="files")
    await wait_until(lambda: "files" in rec.sources)
    assert rec.sources["files"].rejections == {"publish": 1}
    assert rec.redis_up is True


async def test_idempotent_against_a_real_publisher() -> None:
    server = MemoryServer()
    config = HotReloadConfig.from_url("redis://localhost:6379/0")
    first = AsyncPublisher(config, transport=MemoryTransport(server))
    second = AsyncPublisher(config, transport=MemoryTransport(server))

    async def ping() -> None:
        await first.transport.ping()

    recs = [Reconciler(pub, Metrics(), ping=ping, backoff_max=0.05, probe_interval=0.02)
            for pub in (first, second)]
    tasks = [asyncio.create_task(r.run()) for r in recs]
    try:
        for rec in recs:
            rec.open_gate()
        for doc in ({"a": 1}, {"a": 2, "b": {"c": True}}, {"a": 2, "b": {"c": True}}):
            for rec in recs:  # two daemons reporting the same desired state
                await rec.desired("app", doc, source="files")
            await wait_until(lambda: all(not r.pending() for r in recs))
        history = await first.history("app", limit=100)
        assert [e.version for e in history] == [1, 2]
        assert (await first.snapshot("app")).settings == {"a": 2, "b": {"c": True}}
        server.set_down(True)
        for n in range(3, 6):
            await recs[0].desired("app", {"a": n}, source="files")
        await wait_until(lambda: recs[0].redis_up is False)
        server.set_down(False)
        await wait_until(lambda: recs[0].redis_up and not recs[0].pending())
        history = await first.history("app", limit=100)
        assert [e.version for e in history] == [1, 2, 3]
        assert {(c.op, c.key) for c in history[-1].value_changes()} == {("set", "a"),
                                                                          ("delete", "b.c")}
        assert (await first.snapshot("app")).settings == {"a": 5}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_failing_namespace_does_not_stop_the_others() -> None:
    pub = FakePublisher()
    pub.broken.add("aaa")
    metrics = Metrics()
    asked: list[bool] = []
    rec = Reconciler(pub, metrics, ping=pub.ping, backoff_max=0.05, probe_interval=0.02,
                     on_reconnect=lambda: asked.append(True))
    task = asyncio.create_task(rec.run())
    try:
        rec.open_gate()
        await rec.desired("aaa", {"x": 1}, source="files")
        await rec.desired("bbb", {"y": 2}, source="files")
        await rec.invalidate("aaa", ["k"], source="pg")
        await wait_until(lambda: "bbb" in pub.published and pub.attempts.get("aaa", 0) >= 5)
        assert rec.redis_up is True
        assert asked == []
        assert sample(metrics, "hotreload_redis_reconnects_total") == 0
        assert rec.pending() == ["aaa"]
        assert "WRONGTYPE" in rec.status()["publish_errors"]["aaa"]
        assert any(line.startswith("  publishing aaa fails (retried with backoff): ")
                   for line in describe_daemon({"host": "h", "pid": 1, **rec.status()}))
        assert rec.sources["files"].rejections == {"publish": 1}  # counted once, retried often
        assert sample(metrics, "hotreload_rejections_total", source="files",
                      reason="publish") == 1
        pub.broken.clear()  # the key is repaired: the retry publishes it
        await wait_until(lambda: not rec.pending())
        assert pub.published["aaa"] == {"x": 1}
        assert ("invalidate", "aaa", (("k",), (), False)) in pub.calls
        assert rec.status()["publish_errors"] == {}
        assert asked == []
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_failing_namespace_backs_off_by_itself() -> None:
    pub = FakePublisher()
    pub.broken.add("aaa")
    rec = Reconciler(pub, Metrics(), ping=pub.ping, backoff_max=0.2, probe_interval=0.02)
    await rec.probe()
    rec.open_gate()
    await rec.desired("aaa", {"x": 1}, source="files")
    await rec._flush()
    await rec._flush()  # before its retry time: not attempted
    assert pub.attempts["aaa"] == 1
    await rec.desired("aaa", {"x": 1}, source="files")  # the same document: still waits
    await rec._flush()
    assert pub.attempts["aaa"] == 1
    await rec.desired("aaa", {"x": 2}, source="files")  # a new document is tried at once
    await rec._flush()
    assert pub.attempts["aaa"] == 2


async def test_an_invalidation_too_large_becomes_everything(
    fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pub, rec, _ = fake
    real = pub.invalidate

    async def limited(keys: Sequence[str] = (), prefixes: Sequence[str] = (), *,
                      everything: bool = False, namespace: str | None = None,
                      source: str | None = None) -> PublishResult:
        if len(keys) > 10:
            raise ProtocolError("event of 70000 bytes exceeds security.max_message_bytes")
        result: PublishResult = await real(keys, prefixes, everything=everything,
                                           namespace=namespace, source=source)
        return result

    pub.invalidate = limited
    for i in range(50):
        await rec.invalidate("users", [f"user:{i}"], source="pg")
    rec.open_gate()
    await wait_until(lambda: not rec.pending())
    assert pub.calls == [("invalidate", "users", ((), (), True))]
    assert "pg" not in rec.sources  # not a rejection: nothing was lost
    assert [getattr(r, "action", None) for r in caplog.records].count(
        "invalidate_everything") == 1


async def test_a_namespace_belongs_to_its_first_source(fake: Any) -> None:
    pub, rec, metrics = fake
    rec.open_gate()
    await rec.desired("app", {"a": 1}, source="file:app.yaml")
    await wait_until(lambda: not rec.pending())
    for n in range(3):  # the settings table also has rows for "app": ignored, counted once
        await rec.desired("app", {"b": n}, source="postgres")
        await rec.desired("app", {"a": 1}, source="file:app.yaml")
        await wait_until(lambda: not rec.pending())
    assert pub.calls == [("config", "app", {"a": 1})]
    assert rec.owners == {"app": "file:app.yaml"}
    assert rec.sources["postgres"].rejections == {"conflict": 1}
    assert sample(metrics, "hotreload_rejections_total", source="postgres",
                  reason="conflict") == 1
    [detail] = rec.status()["conflicts"]
    assert "'app'" in detail and "file:app.yaml" in detail and "postgres" in detail
    await rec.desired("app", {}, source="postgres")  # its rows are gone: conflict resolved
    assert rec.status()["conflicts"] == []
    await rec.desired("app", {"a": 2}, source="file:app.yaml")
    await wait_until(lambda: not rec.pending())
    assert pub.published["app"] == {"a": 2}


async def test_an_empty_document_claims_nothing(fake: Any) -> None:
    pub, rec, _ = fake
    rec.open_gate()
    await rec.desired("app", {}, source="postgres")
    await rec.desired("app", {"a": 1}, source="file:app.yaml")
    await rec.desired("app", {}, source="postgres")
    await wait_until(lambda: not rec.pending())
    assert rec.owners == {"app": "file:app.yaml"}
    assert pub.published["app"] == {"a": 1}
    assert "postgres" not in rec.sources


async def test_nothing_new_starts_after_the_gate_closes(fake: Any) -> None:
    pub, rec, _ = fake
    await wait_until(lambda: rec.redis_up)
    pub.gate = asyncio.Event()
    for ns in ("aaa", "bbb", "ccc"):
        await rec.desired(ns, {"x": 1}, source="files")
    await rec.invalidate("aaa", ["k"], source="pg")
    rec.open_gate()
    await wait_until(pub.entered.is_set)  # "aaa" is being published
    rec.close_gate()  # the leader lock is lost
    pub.gate.set()
    await wait_until(lambda: "aaa" not in rec.pending() or pub.calls)
    await asyncio.sleep(0.1)  # give a wrongly open gate the chance to publish more
    assert pub.calls == [("config", "aaa", {"x": 1})]
    assert rec.pending() == ["aaa", "bbb", "ccc"]  # the invalidation stays pending
