"""End to end on Redis Cluster and Redis Sentinel: the real `AsyncPublisher` publishing a
stream, several `AsyncSubscriber`s following it, and a failure inflicted mid-stream.

The application (`App`) holds its source of truth (``doc``, as PostgreSQL would): each step
adds a key ``k<i>`` and sets the counter ``n``, and publishes that change. A publish that
raises `BackendError` (the outage) is tried again; a `RecoveryNeeded` (the failover lost
publishes the server had acknowledged: replication is asynchronous) is answered with
``replace(doc)``, which starts a new epoch from the source of truth (docs/scaling.md,
*Guarantees*). The test counts both.

Every scenario ends with:

- every subscriber holds exactly the application's final document and the final (epoch,
  version), within `CONVERGE` seconds of the failure having settled (the failure helper of
  `tests/integration/cluster_servers.py` returned);
- zero lost updates: every publish the publisher acknowledged is in the final state;
- no subscriber ever went backwards: the (epoch, version) its change listeners saw never
  decreased (epochs ordered by their time, versions within one epoch);
- the publisher's acknowledged versions never went backwards either.

``CONVERGE = 15 s`` is the bound stated in docs/scaling.md (*What happens during each
failure*), with the test deployment's failure detection (``cluster-node-timeout`` 1.5 s,
``down-after-milliseconds`` 1 s) and the fast subscriber tuning of the integration tests
(heartbeat 0.5 s, backstop 1 s). Set ``HOTRELOAD_E2E_TIMINGS=<file>`` to append the measured
convergence times to a file.

The same cluster is then used by the other layers, one short test each: the two-level cache,
the CLI, and the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hotreload import AsyncPublisher, AsyncSubscriber, PublishResult, Subscriber
from hotreload.cache import TwoLevelCache
from hotreload.config import HotReloadConfig, build_config
from hotreload.errors import BackendError, RecoveryNeeded
from hotreload.subscriber import SettingsChange
from hotreload.transport.cluster import ClusterSubscription
from hotreload.wire.epochs import compare_epochs
from hotreload.wire.names import keys_for
from tests.conftest import await_until, unique, wait_until
from tests.integration.cluster_servers import MASTER, ClusterServers, SentinelServers, Server
from tests.integration.conftest import FAST_SUBSCRIBER

pytestmark = pytest.mark.integration

#: Seconds within which every subscriber holds the final settings and version, counted from
#: the moment the failure settled (the failure helper returned). docs/scaling.md states it.
CONVERGE = 15.0
#: Pause between the application's publishes: a stream, not a flood.
PACE = 0.01
#: Publishes acknowledged after the failure settled, before the stream stops.
AFTER = 10
#: Changes every subscriber must have seen before the failure is inflicted.
BEFORE = 5


def cluster_config(cluster: ClusterServers, prefix: str, *, replicas: bool = True,
                   resp: int = 3) -> HotReloadConfig:
    return build_config({"prefix": prefix, "subscriber": dict(FAST_SUBSCRIBER), "redis": {
        "protocol": resp, "cluster": {"nodes": cluster.addrs[:3],
                                      "read_from_replicas": replicas}}})


def sentinel_config(deployment: SentinelServers, prefix: str, *,
                    resp: int = 3) -> HotReloadConfig:
    return build_config({"prefix": prefix, "subscriber": dict(FAST_SUBSCRIBER), "redis": {
        "protocol": resp, "sentinel": {"master": MASTER, "nodes": deployment.nodes}}})


def record_timing(scenario: str, **measured: float) -> None:
    """Append what a scenario measured to ``$HOTRELOAD_E2E_TIMINGS`` (a JSON line), if set."""
    path = os.environ.get("HOTRELOAD_E2E_TIMINGS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"scenario": scenario, **{
                k: round(v, 3) for k, v in measured.items()}}) + "\n")


# ---------------------------------------------------------------------- the application


class App:
    """Publishes a stream to one namespace as an application would (see the module doc)."""

    def __init__(self, pub: AsyncPublisher, ns: str, *, pace: float = PACE) -> None:
        self.pub = pub
        self.ns = ns
        self.pace = pace
        self.doc: dict[str, int] = {}
        self.acked = 0  # steps whose publish returned
        self.acked_at: list[float] = []
        self.published: list[tuple[str, int]] = []  # (epoch, version) of each acknowledgement
        self.retries = 0  # publishes that raised BackendError and were tried again
        self.recoveries = 0  # RecoveryNeeded answered with replace(doc)
        self.last: PublishResult | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def step(self) -> PublishResult:
        i = self.acked + 1
        change = {f"k{i}": i, "n": i}
        self.doc.update(change)
        recovering = False
        while True:
            try:
                if recovering:
                    result = await self.pub.replace(self.doc, namespace=self.ns)
                else:
                    result = await self.pub.publish(change, namespace=self.ns)
            except BackendError:
                self.retries += 1
                await asyncio.sleep(self.pace)
                continue
            except RecoveryNeeded:
                self.recoveries += 1
                recovering = True
                continue
            break
        assert result.epoch is not None
        self.acked = i
        self.acked_at.append(time.monotonic())
        self.published.append((result.epoch, result.version))
        self.last = result
        return result

    def longest_gap(self, since: float) -> float:
        """The longest time without an acknowledged publish after ``since`` (the outage as
        the application saw it)."""
        times = [since, *(at for at in self.acked_at if at >= since)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def acked_since(self, t: float) -> int:
        return sum(1 for at in self.acked_at if at >= t)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.step()
            await asyncio.sleep(self.pace)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    @property
    def final(self) -> tuple[str, int]:
        assert self.last is not None and self.last.epoch is not None
        return self.last.epoch, self.last.version

    def check_stopped(self) -> None:
        """The stream task is still running (a failure of its own would end it early)."""
        if self._task is not None and self._task.done():
            self._task.result()  # raises what ended it
            pytest.fail("the stream stopped by itself")


def assert_forward(seen: Sequence[tuple[str | None, int]], who: str) -> None:
    """(epoch, version) pairs never go backwards."""
    for (e1, v1), (e2, v2) in itertools.pairwise(seen):
        if e1 == e2:
            assert v2 >= v1, f"{who} went backwards: {e1} v{v1} -> v{v2} in {list(seen)}"
        else:
            assert e1 is None or (e2 is not None and compare_epochs(e2, e1) > 0), (
                f"{who} went to an older epoch: {e1} v{v1} -> {e2} v{v2}")


class Follower:
    """A started subscriber and the (epoch, version) of every change it reported."""

    def __init__(self, sub: AsyncSubscriber[Any], label: str) -> None:
        self.sub = sub
        self.label = label
        self.seen: list[tuple[str | None, int]] = []
        sub.on_change(self._changed)

    def _changed(self, change: SettingsChange) -> None:
        self.seen.append((change.epoch, change.version))

    @property
    def node(self) -> str | None:
        sub = self.sub._subscription  # the transport's subscription: which node it is on
        return sub.node if isinstance(sub, ClusterSubscription) else None

    def holds(self, doc: dict[str, int], final: tuple[str, int]) -> bool:
        return (self.sub.epoch, self.sub.version) == final and self.sub.as_dict() == doc


@contextlib.asynccontextmanager
async def followers(specs: Sequence[tuple[str, HotReloadConfig]], ns: str
                    ) -> AsyncIterator[list[Follower]]:
    subs: list[Follower] = []
    try:
        for label, config in specs:
            sub: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=ns)
            follower = Follower(sub, label)  # listening before the first load
            await sub.start(timeout=10)
            subs.append(follower)
        yield subs
    finally:
        for follower in subs:
            await follower.sub.aclose()


async def through(scenario: str, app: App, subs: Sequence[Follower],
                  failure: Callable[[], object]) -> tuple[float, object]:
    """Run the stream, inflict ``failure`` (in a thread) once every subscriber followed a
    few changes, keep publishing until `AFTER` more publishes are acknowledged, stop, and
    check the end state (see the module doc). Returns the convergence time (seconds after
    the failure settled) and what ``failure`` returned."""
    app.start()
    try:
        await await_until(lambda: (app.check_stopped(), all(len(f.seen) >= BEFORE
                                                            for f in subs))[1],
                          10, "the stream to reach every subscriber")
        inflicted = time.monotonic()
        outcome = await asyncio.to_thread(failure)
        settled = time.monotonic()
        await await_until(lambda: (app.check_stopped(), app.acked_since(settled) >= AFTER)[1],
                          CONVERGE, f"{AFTER} publishes after the failure")
    finally:
        await app.stop()
    doc, final = dict(app.doc), app.final
    remaining = settled + CONVERGE - time.monotonic()
    await await_until(lambda: all(f.holds(doc, final) for f in subs), max(remaining, 0.0),
                      f"every subscriber to hold {final} within {CONVERGE}s of the failure: "
                      + "; ".join(f"{f.label}: {f.sub.epoch} v{f.sub.version}" for f in subs))
    converged = time.monotonic() - settled
    record_timing(scenario, failure=settled - inflicted, converged=converged,
                  publisher_gap=app.longest_gap(inflicted), retries=app.retries,
                  recoveries=app.recoveries)
    await check_end_state(app, subs)
    return converged, outcome


async def check_end_state(app: App, subs: Sequence[Follower]) -> None:
    doc, final = app.doc, app.final
    # Zero lost updates: every acknowledged step is in the state the server holds.
    assert doc == {"n": app.acked, **{f"k{i}": i for i in range(1, app.acked + 1)}}
    snap = await app.pub.snapshot(app.ns)
    assert (snap.epoch, snap.version) == final
    assert snap.settings == doc
    assert_forward(app.published, "the publisher")
    for f in subs:
        assert f.sub.as_dict() == doc, f.label
        assert (f.sub.epoch, f.sub.version) == final, f.label
        assert f.seen and f.seen[-1] == final, (f.label, f.seen[-3:])
        assert_forward(f.seen, f.label)


async def resubscribed(subs: Sequence[Follower], within: float = 5.0) -> None:
    """Every subscriber said *subscribed* again (and so resynced) after the failure."""
    await await_until(lambda: all(f.sub.stats.reconnects >= 1 for f in subs), within,
                      "every subscriber to subscribe again")


# ---------------------------------------------------------------------- Redis Cluster


@pytest.fixture
def prefix() -> str:
    return unique("e2e")


def meta_key(ns: str, prefix: str) -> str:
    return keys_for(ns, prefix).meta


def cluster_specs(cluster: ClusterServers, prefix: str) -> list[tuple[str, HotReloadConfig]]:
    """Four subscribers: three reading from replicas (the default; one on RESP2), one with
    ``read_from_replicas: False`` (listening on the primary)."""
    replicas = cluster_config(cluster, prefix)
    return [("replica-1", replicas), ("replica-2", replicas),
            ("replica-resp2", cluster_config(cluster, prefix, resp=2)),
            ("primary", cluster_config(cluster, prefix, replicas=False))]


@contextlib.asynccontextmanager
async def cluster_stream(cluster: ClusterServers, prefix: str, ns: str
                         ) -> AsyncIterator[tuple[App, list[Follower]]]:
    async with AsyncPublisher(cluster_config(cluster, prefix), namespace=ns) as pub:
        app = App(pub, ns)
        await app.step()
        await asyncio.to_thread(cluster.wait_replicated, meta_key(ns, prefix))
        async with followers(cluster_specs(cluster, prefix), ns) as subs:
            shard = cluster.shard_of(meta_key(ns, prefix))
            on_replicas = {f.node for f in subs[:3]}
            assert on_replicas <= {n.addr for n in shard.replicas}, on_replicas
            assert subs[3].node == shard.primary.addr
            yield app, subs


async def test_killing_the_primary_of_the_namespace(redis_cluster: ClusterServers,
                                                    prefix: str) -> None:
    ns = unique("kill")
    async with cluster_stream(redis_cluster, prefix, ns) as (app, subs):
        _, outcome = await through("cluster-kill-primary", app, subs,
                                   lambda: redis_cluster.kill_primary_of(meta_key(ns, prefix)))
        _killed, heir = outcome  # type: ignore[misc]
        assert redis_cluster.shard_of(meta_key(ns, prefix)).primary is heir
        assert app.retries > 0  # the publisher saw the outage and tried again
        # Every subscription moved (the primary's, whose node died) or saw its node promoted
        # (the replicas': the ROLE check, every second) and resynced.
        await resubscribed(subs)
        assert {f.node for f in subs} == {heir.addr}  # the only node of the shard left


async def test_a_planned_cluster_failover(redis_cluster: ClusterServers, prefix: str) -> None:
    ns = unique("failover")
    async with cluster_stream(redis_cluster, prefix, ns) as (app, subs):
        _, outcome = await through("cluster-failover", app, subs,
                                   lambda: redis_cluster.failover(meta_key(ns, prefix)))
        old, new = outcome  # type: ignore[misc]
        assert redis_cluster.shard_of(meta_key(ns, prefix)).primary is new
        assert app.recoveries == 0  # a planned switch loses nothing
        await resubscribed(subs)
        assert {f.node for f in subs} <= {old.addr, new.addr}


async def test_resharding_the_slot_mid_stream(redis_cluster: ClusterServers,
                                              prefix: str) -> None:
    ns = unique("reshard")
    async with cluster_stream(redis_cluster, prefix, ns) as (app, subs):
        batches = 0

        def count_batch() -> None:
            nonlocal batches
            batches += 1

        _, outcome = await through(
            "cluster-move-slot", app, subs,
            lambda: redis_cluster.move_slot(meta_key(ns, prefix), on_batch=count_batch))
        src, dst = outcome  # type: ignore[misc]
        now = redis_cluster.shard_of(meta_key(ns, prefix))
        assert now.primary is dst and dst is not src and batches >= 1
        assert app.recoveries == 0  # MIGRATE moves the keys: nothing is lost
        await resubscribed(subs)  # the old shard's nodes unsubscribed everyone
        assert {f.node for f in subs} <= {n.addr for n in (now.primary, *now.replicas)}


async def test_many_namespaces_on_every_shard_while_one_shard_fails_over(
        redis_cluster: ClusterServers, prefix: str) -> None:
    per_shard = 4
    by_shard: dict[int, list[str]] = {}
    while len(by_shard) < 3 or min(len(v) for v in by_shard.values()) < per_shard:
        ns = unique("many")
        port = redis_cluster.shard_of(meta_key(ns, prefix)).primary.port
        if len(by_shard.setdefault(port, [])) < per_shard:
            by_shard[port].append(ns)
    names = [ns for group in by_shard.values() for ns in group]
    victim = next(iter(by_shard))
    hit = set(by_shard[victim])
    replicas = cluster_config(redis_cluster, prefix)
    primaries = cluster_config(redis_cluster, prefix, replicas=False)
    async with AsyncPublisher(replicas) as pub, contextlib.AsyncExitStack() as stack:
        apps = {ns: App(pub, ns, pace=0.05) for ns in names}
        await asyncio.gather(*(a.step() for a in apps.values()))
        for ns in names:
            await asyncio.to_thread(redis_cluster.wait_replicated, meta_key(ns, prefix))
        subs = {ns: await stack.enter_async_context(followers(
            [(f"{ns}/replica", replicas), (f"{ns}/primary", primaries)], ns)) for ns in names}
        everyone = [f for group in subs.values() for f in group]
        for a in apps.values():
            a.start()
        try:
            await await_until(lambda: all(len(f.seen) >= 3 for f in everyone), 15,
                              "every stream to reach its subscribers")
            inflicted = time.monotonic()
            await asyncio.to_thread(redis_cluster.kill_primary_of, meta_key(names[0], prefix))
            settled = time.monotonic()
            await await_until(lambda: ([a.check_stopped() for a in apps.values()], all(
                a.acked_since(settled) >= 3 for a in apps.values()))[1], CONVERGE,
                "every namespace to publish again")
        finally:
            for a in apps.values():
                await a.stop()
        finals = {ns: (dict(a.doc), a.final) for ns, a in apps.items()}
        remaining = settled + CONVERGE - time.monotonic()
        await await_until(lambda: all(f.holds(*finals[ns]) for ns in names for f in subs[ns]),
                          max(remaining, 0.0), "every subscriber to hold its namespace's end")
        converged = time.monotonic() - settled
        record_timing("cluster-many-namespaces", failure=settled - inflicted,
                      converged=converged,
                      publisher_gap=max(apps[ns].longest_gap(inflicted) for ns in hit),
                      retries=sum(a.retries for a in apps.values()),
                      recoveries=sum(a.recoveries for a in apps.values()))
        for ns in names:
            await check_end_state(apps[ns], subs[ns])
            if ns not in hit:  # the other shards did not notice
                assert apps[ns].retries == 0 and apps[ns].recoveries == 0, ns
                for f in subs[ns]:
                    assert f.sub.stats.reconnects == 0, f.label
                    # every version after the one loaded at start, each once, in order
                    assert [v for _, v in f.seen] == list(range(2, apps[ns].acked + 1)), (
                        f.label, f.seen)
        assert sum(apps[ns].retries for ns in hit) > 0


# ---------------------------------------------------------------------- Redis Sentinel


@contextlib.asynccontextmanager
async def sentinel_stream(deployment: SentinelServers, prefix: str, ns: str
                          ) -> AsyncIterator[tuple[App, list[Follower]]]:
    config = sentinel_config(deployment, prefix)
    specs = [("resp3-1", config), ("resp3-2", config),
             ("resp2", sentinel_config(deployment, prefix, resp=2))]
    async with AsyncPublisher(config, namespace=ns) as pub:
        app = App(pub, ns)
        await app.step()
        await asyncio.to_thread(deployment.wait_replicated)
        async with followers(specs, ns) as subs:
            yield app, subs


async def test_a_sentinel_failover(redis_sentinel: SentinelServers, prefix: str) -> None:
    ns = unique("sfailover")
    async with sentinel_stream(redis_sentinel, prefix, ns) as (app, subs):
        await through("sentinel-failover", app, subs, redis_sentinel.failover)
        await resubscribed(subs)


async def test_killing_the_sentinel_master(redis_sentinel: SentinelServers,
                                           prefix: str) -> None:
    ns = unique("skill")
    async with sentinel_stream(redis_sentinel, prefix, ns) as (app, subs):
        _, outcome = await through("sentinel-kill-master", app, subs,
                                   redis_sentinel.kill_master)
        old, _new = outcome  # type: ignore[misc]
        assert isinstance(old, Server) and not old.running
        assert app.retries > 0
        await resubscribed(subs)


# ---------------------------------------------------------------------- the other layers


def test_a_cache_invalidation_crosses_two_subscribers_on_the_cluster(
        redis_cluster: ClusterServers, prefix: str) -> None:
    ns = unique("cache")
    rows = {"user:1": "ada"}
    loads: list[str] = []

    def loader(key: str) -> Any:
        loads.append(key)
        return rows.get(key)

    config = cluster_config(redis_cluster, prefix)
    with contextlib.ExitStack() as stack:
        caches = []
        for _ in range(2):
            sub: Subscriber[Any] = Subscriber(config, namespace=ns)
            stack.callback(sub.close)
            sub.start()
            cache = TwoLevelCache(sub, name="rows")
            stack.callback(cache.close)
            wait_until(lambda c=cache: c.trusted, what="the cache to be trusted")  # type: ignore[misc]
            caches.append(cache)
        one, two = caches
        assert one.get("user:1", loader) == "ada"
        assert two.get("user:1", loader) == "ada"  # from L2, on the namespace's primary
        assert loads == ["user:1"]
        assert "user:1" in two.core.l1
        rows["user:1"] = "grace"
        one.invalidate("user:1")
        wait_until(lambda: "user:1" not in two.core.l1, what="the other pod to drop its L1")
        assert two.get("user:1", loader) == "grace"
        assert loads == ["user:1", "user:1"]


@pytest.fixture
def cli_config(tmp_path: Path, redis_cluster: ClusterServers, prefix: str,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HOTRELOAD_CONFIG", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"prefix": prefix, "redis": {"url": redis_cluster.url()},
                                    "subscriber": dict(FAST_SUBSCRIBER)}))
    return path


def test_the_cli_on_the_cluster(cli_config: Path, redis_cluster: ClusterServers) -> None:
    from hotreload.cli import cli
    from hotreload.cli._register import register

    register(cli)
    ns = unique("cli")

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["-c", str(cli_config), *args, "-n", ns],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output + result.stderr
        return result.stdout

    assert "published v1" in run("publish", "db.pool_size=10", "db.host=x")
    config = build_config(yaml.safe_load(cli_config.read_text()))
    with Subscriber(config, namespace=ns) as sub:
        assert "published v2" in run("publish", "db.pool_size=20")
        sub.wait_for_version(2)
        assert sub.as_dict() == {"db": {"host": "x", "pool_size": 20}}
        assert run("get", "db.pool_size").strip() == "20"
        got = json.loads(run("get", "--json"))
        assert got["version"] == 2 and got["settings"] == sub.as_dict()
        status = json.loads(run("status", "--json"))
        assert status["version"] == 2 and status["keys"] == 2
        assert status["subscribers"] == 1  # counted on every node of the shard


async def test_the_daemon_publishes_to_a_cluster_namespace(
        redis_cluster: ClusterServers, prefix: str, tmp_path: Path) -> None:
    from hotreload.daemon.core import Daemon

    ns = unique("daemon")
    file = tmp_path / "settings.yaml"
    file.write_text("db:\n  pool_size: 5\n")
    config = build_config({
        "prefix": prefix, "subscriber": dict(FAST_SUBSCRIBER), "daemon": {"http": None},
        "redis": {"cluster": {"nodes": redis_cluster.addrs[:2]}},
        "sources": {"files": [{"path": str(file), "namespace": ns}]}})
    daemon = Daemon(config, leader=None)
    task = asyncio.create_task(daemon.run())
    try:
        sub: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=ns)
        async with sub:
            await await_until(lambda: sub.as_dict() == {"db": {"pool_size": 5}}, 10,
                              "the daemon's first publish")
            file.write_text("db:\n  pool_size: 6\n  host: db1\n")
            await await_until(lambda: sub.as_dict() == {"db": {"pool_size": 6, "host": "db1"}},
                              10, "the file's change")
            assert sub.version == 2
            # the subscriber may hear of v2 before the daemon has recorded its own publish
            await await_until(lambda: daemon.reconciler.versions.get(ns) == 2, 10,
                              "the daemon to record v2")
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)
