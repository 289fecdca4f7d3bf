"""`ClusterTransport` against a real six-node Redis Cluster going through failures: the primary
of a namespace's slot killed, a planned failover, the slot resharded mid-stream, many namespaces
on every shard at once; and the routing itself (replica reads, ``primary=True``, scripts)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from hotreload.config import build_config
from hotreload.errors import BackendError
from hotreload.transport import open_transport
from hotreload.transport.cluster import ClusterSubscription, ClusterTransport
from hotreload.wire.names import keys_for
from tests.conftest import unique
from tests.integration.cluster_servers import ClusterServers, Shard
from tests.integration.transport.streams import Reader, Writer, subscribed, until
from tests.transport_contract import create, expect, step

PREFIX = "hr"


def transport(cluster: ClusterServers, *, replicas: bool, resp: int = 3) -> ClusterTransport:
    config = build_config({"prefix": PREFIX, "redis": {
        "protocol": resp, "cluster": {"nodes": cluster.addrs[:3],
                                      "read_from_replicas": replicas}}})
    t = open_transport(config)
    assert isinstance(t, ClusterTransport)
    return t


@pytest.fixture
async def transports(redis_cluster: ClusterServers) -> AsyncIterator[
        tuple[ClusterTransport, ClusterTransport]]:
    """A transport reading from replicas (RESP3) and one reading from primaries (RESP2)."""
    pair = transport(redis_cluster, replicas=True), transport(redis_cluster, replicas=False,
                                                             resp=2)
    try:
        yield pair
    finally:
        for t in pair:
            await t.aclose()


def meta_key(ns: str) -> str:
    return keys_for(ns, PREFIX).meta


def node_of(reader: Reader) -> str | None:
    assert isinstance(reader.sub, ClusterSubscription)
    return reader.sub.node


async def follow_through(cluster: ClusterServers, ts: tuple[ClusterTransport, ClusterTransport],
                         ns: str, failure: str) -> tuple[Writer, list[Reader], Shard]:
    """Start a stream of commits to ``ns`` and four subscriptions (two on a replica of the
    shard, two on its primary); inflict ``failure`` mid-stream (a method of
    `ClusterServers` taking the namespace's key, run in a thread); check that every
    subscription said ``subscribed`` again afterwards and that every one receives the commit
    that ends the stream; return the writer, the readers and the shard before the failure."""
    replicas, primaries = ts
    shard = cluster.shard_of(meta_key(ns))
    writer = Writer(primaries, ns)
    await writer.create()
    await asyncio.to_thread(cluster.wait_replicated, meta_key(ns))  # the tail may be lost
    readers: list[Reader] = []
    try:
        for t in (replicas, replicas, primaries, primaries):
            readers.append(await subscribed(t, ns))
        assert {node_of(r) for r in readers[:2]} <= {n.addr for n in shard.replicas}
        assert {node_of(r) for r in readers[2:]} == {shard.primary.addr}
        writer.start()
        try:
            await until("the stream to reach every subscription",
                        lambda: all(len(r.versions()) >= 3 for r in readers))
            before = time.monotonic()
            await asyncio.to_thread(getattr(cluster, failure), meta_key(ns))
            await until("every subscription to subscribe again",
                        lambda: all(r.subscribed_after(before) for r in readers))
            settled = time.monotonic()
            await until("commits after the failure",
                        lambda: writer.commits_since(settled) >= 3)
        finally:
            final = await writer.stop()
        await until(f"every subscription to receive version {final}",
                    lambda: all(r.has(final) for r in readers))
        state = await primaries.load_leaves(ns, primary=True)
        assert state.meta[b"version"] == str(final).encode()
        assert state.leaves == {b"v": str(final).encode()}
        loaded = await replicas.load(ns, max_tail=10_000, primary=True)
        assert loaded.meta[b"version"] == str(final).encode()
    except BaseException:
        await stop_all(readers)
        raise
    return writer, readers, shard


async def stop_all(readers: list[Reader]) -> None:
    for reader in readers:
        await reader.stop()


async def test_killing_the_primary_of_the_slot(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    ns = unique("kill")
    writer, readers, shard = await follow_through(redis_cluster, transports, ns,
                                                  "kill_primary_of")
    try:
        # The replica took over: the replica readers stayed on it (now the primary), the
        # primary readers found it; the writer saw errors while the shard had no primary.
        assert redis_cluster.shard_of(meta_key(ns)).primary is shard.replicas[0]
        assert {node_of(r) for r in readers} == {shard.replicas[0].addr}
        assert writer.errors > 0
        assert all(r.errors > 0 for r in readers[2:])  # their node died under them
    finally:
        await stop_all(readers)
    await asyncio.to_thread(redis_cluster.heal)  # the killed node rejoins as a replica
    replicas, _ = transports
    loaded = await replicas.load_leaves(ns, primary=True)
    assert loaded.leaves == {b"v": str(writer.version).encode()}


async def test_a_primary_read_after_the_primary_died_reaches_the_promoted_replica(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    """A transport that has not touched the slot since its primary died still names the dead
    node as the primary; redis-py refreshes its slot map after errors, but not more often than
    its refresh delay. A read of the primary reads the map again and reaches the promoted
    replica, the first time (before, it raised a connection error)."""
    replicas, primaries = transports
    ns = unique("dead")
    assert (await create(primaries, ns=ns)).ok
    await asyncio.to_thread(redis_cluster.wait_replicated, meta_key(ns))
    assert (await replicas.load(ns, max_tail=10, primary=True)).meta[b"version"] == b"1"
    _, heir = await asyncio.to_thread(redis_cluster.kill_primary_of, meta_key(ns))
    for t in (replicas, primaries):
        loaded = await t.load(ns, max_tail=10, primary=True)
        assert loaded.meta[b"version"] == b"1"
    assert heir.call("HGET", meta_key(ns), "version") == b"1"


async def test_killing_the_replica_the_subscriptions_listen_on(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    replicas, primaries = transports
    ns = unique("killreplica")
    shard = redis_cluster.shard_of(meta_key(ns))
    writer = Writer(primaries, ns)
    await writer.create()
    readers = [await subscribed(replicas, ns) for _ in range(2)]
    try:
        assert {node_of(r) for r in readers} == {shard.replicas[0].addr}
        writer.start()
        before = time.monotonic()
        await asyncio.to_thread(redis_cluster.kill_replica_of, meta_key(ns))
        await until("the subscriptions to subscribe again",
                    lambda: all(r.subscribed_after(before) for r in readers))
        assert {node_of(r) for r in readers} == {shard.primary.addr}  # no replica left
        settled = time.monotonic()
        await until("commits after the failure", lambda: writer.commits_since(settled) >= 3)
        final = await writer.stop()
        await until(f"the subscriptions to receive version {final}",
                    lambda: all(r.has(final) for r in readers))
        assert (await replicas.head(ns)).meta_version == str(final).encode()  # the primary
    finally:
        await writer.stop()
        await stop_all(readers)


async def test_a_planned_failover(redis_cluster: ClusterServers,
                                  transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    ns = unique("failover")
    _writer, readers, shard = await follow_through(redis_cluster, transports, ns, "failover")
    try:
        now = redis_cluster.shard_of(meta_key(ns))
        assert now.primary is shard.replicas[0] and now.replicas == (shard.primary,)
        # The demoted primary unsubscribed its subscribers; those on the promoted replica moved
        # when their ROLE check saw it change.
        for reader in readers[2:]:
            assert any(m.kind == "unsubscribed" for _, m in reader.got)
        # A replica reader listens on the new replica, or on the primary while that replica
        # resyncs (the cluster does not list it then); a primary reader on the new primary
        # (or on the old primary, a replica now, if the node that gave it the slot map had
        # not heard of the switch yet: a replica delivers the shard's events as well).
        assert {node_of(r) for r in readers} <= {shard.primary.addr, now.primary.addr}
    finally:
        await stop_all(readers)


async def test_a_write_after_a_planned_failover_reaches_the_new_primary(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    """With replica reads, redis-py opens every connection in READONLY mode: the demoted
    primary runs a write script (EVALSHA is no write command, so no MOVED) and fails inside
    it with READONLY. The transport reads the slot map again and runs it on the new primary
    (before, every write failed until a connection error refreshed the map)."""
    replicas, _ = transports
    ns = unique("demoted")
    assert (await create(replicas, ns=ns)).ok  # an idle READONLY connection to the primary
    await asyncio.to_thread(redis_cluster.wait_replicated, meta_key(ns))
    old, new = await asyncio.to_thread(redis_cluster.failover, meta_key(ns))
    assert (await step(replicas, 1, ns=ns)).ok
    assert new.call("HGET", meta_key(ns), "version") == b"2"
    assert old.info("replication")["role"] == "slave"


async def test_resharding_the_slot_mid_stream(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    ns = unique("reshard")
    _writer, readers, shard = await follow_through(redis_cluster, transports, ns, "move_slot")
    try:
        now = redis_cluster.shard_of(meta_key(ns))
        assert now.primary is not shard.primary
        for reader in readers:  # the old shard's nodes unsubscribed everyone
            assert any(m.kind == "unsubscribed" for _, m in reader.got)
        assert {node_of(r) for r in readers[:2]} <= {n.addr for n in (now.primary,
                                                                      *now.replicas)}
        assert {node_of(r) for r in readers[2:]} == {now.primary.addr}
    finally:
        await stop_all(readers)


async def test_many_namespaces_on_every_shard_while_one_shard_fails_over(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    replicas, primaries = transports
    by_shard: dict[int, list[str]] = {}
    while len(by_shard) < 3 or min(len(v) for v in by_shard.values()) < 3:
        ns = unique("many")
        port = redis_cluster.shard_of(meta_key(ns)).primary.port
        if len(by_shard.setdefault(port, [])) < 3:
            by_shard[port].append(ns)
    names = [ns for group in by_shard.values() for ns in group]
    victim_port = next(iter(by_shard))
    hit = set(by_shard[victim_port])
    writers = {ns: Writer(replicas, ns, pace=0.05) for ns in names}
    for w in writers.values():
        await w.create()
        await asyncio.to_thread(redis_cluster.wait_replicated, meta_key(w.ns))
    readers = {ns: [await subscribed(t, ns) for t in (replicas, primaries)] for ns in names}
    everyone = [r for pair in readers.values() for r in pair]
    for w in writers.values():
        w.start()
    try:
        await until("every stream to reach its subscriptions",
                    lambda: all(len(r.versions()) >= 2 for r in everyone))
        before = time.monotonic()
        await asyncio.to_thread(redis_cluster.kill_primary_of, meta_key(by_shard[victim_port][0]))
        await until("the failed shard's subscriptions to subscribe again",
                    lambda: all(r.subscribed_after(before) for ns in hit for r in readers[ns]))
        settled = time.monotonic()
        await until("every namespace to commit again",
                    lambda: all(w.commits_since(settled) >= 2 for w in writers.values()))
    finally:
        finals = {ns: await w.stop() for ns, w in writers.items()}
    try:
        await until("every subscription to receive its namespace's last version",
                    lambda: all(r.has(finals[ns]) for ns in names for r in readers[ns]))
        for ns in names:
            state = await replicas.load_leaves(ns, primary=True)
            assert state.leaves == {b"v": str(finals[ns]).encode()}, ns
            if ns in hit:
                continue
            for reader in readers[ns]:  # the other shards did not notice
                assert reader.resubscriptions() == 0, (ns, reader.got)
                got = reader.versions()
                assert got == list(range(got[0], got[-1] + 1)), (ns, got)
                assert all(m.data.startswith(ns.encode()) for _, m in reader.got
                           if m.kind == "config")
    finally:
        await stop_all(everyone)


async def test_a_stale_slot_map_is_redirected(redis_cluster: ClusterServers) -> None:
    """A subscription whose transport still has the old slot map meets MOVED on SSUBSCRIBE and
    subscribes where the slot lives now; the commands follow MOVED too."""
    for replicas in (True, False):
        ns = unique("moved")
        t = transport(redis_cluster, replicas=replicas)
        try:
            assert (await create(t, ns=ns)).ok  # the transport has the map before the move
            await asyncio.to_thread(redis_cluster.move_slot, meta_key(ns))
            sub = t.subscription(ns)
            await expect(sub, "subscribed")
            now = redis_cluster.shard_of(meta_key(ns))
            assert sub.node in {n.addr for n in (now.primary, *now.replicas)}
            assert (await step(t, 1, ns=ns)).ok
            await expect(sub, "config", b"e2")
            await sub.aclose()
        finally:
            await t.aclose()


async def test_reads_go_to_replicas_unless_primary_is_asked(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    replicas, _ = transports
    ns = unique("route")
    await create(replicas, ns=ns)
    shard = redis_cluster.shard_of(meta_key(ns))
    replica = shard.replicas[0]

    def calls(node: object, command: str) -> int:
        stats = node.info("commandstats")  # type: ignore[attr-defined]
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    async def routed(read: str, **kwargs: object) -> tuple[int, int]:
        before = calls(shard.primary, "evalsha"), calls(replica, "evalsha_ro")
        await getattr(replicas, read)(ns, **kwargs)
        return calls(shard.primary, "evalsha") - before[0], calls(replica,
                                                                  "evalsha_ro") - before[1]

    for read, kwargs in (("load", {"max_tail": 10}), ("load_leaves", {}), ("head", {}),
                         ("read_log", {"first": 1}), ("read_invalidation_log",
                                                      {"first": 1, "last": 2})):
        assert await routed(read, **kwargs) == (0, 1), read
        assert await routed(read, primary=True, **kwargs) == (1, 0), read
    assert await routed("head_token") == (1, 0)  # feeds a compare-and-set: always the primary
    # EVALSHA_RO is routed by its key, as EVALSHA: no COMMAND GETKEYS round trip first.
    assert all(calls(n, "command|getkeys") == 0 for n in redis_cluster.running())


async def test_scripts_come_back_after_every_node_forgot_them(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    replicas, primaries = transports
    ns = unique("noscript")
    await create(primaries, ns=ns)
    sub = replicas.subscription(ns)
    await expect(sub, "subscribed")
    for node in redis_cluster.running():
        node.call("SCRIPT", "FLUSH")
    assert (await step(primaries, 1, ns=ns)).ok
    await expect(sub, "config", b"e2")
    assert (await replicas.load(ns, max_tail=10)).tail == [b"e2"]
    assert (await replicas.load(ns, max_tail=10, primary=True)).tail == [b"e2"]
    await sub.aclose()


async def test_receivers_and_subscribers_count_every_node_of_the_shard(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    replicas, primaries = transports
    ns = unique("count")
    subs = [t.subscription(ns) for t in (replicas, primaries, primaries)]
    for sub in subs:
        await expect(sub, "subscribed")
    assert await replicas.subscribers(ns) == 3
    assert (await create(replicas, ns=ns)).receivers == 3  # SPUBLISH counts 2, the replica 1
    sent = await replicas.send_invalidation(ns, expect=None, epoch="1-00", seq=1, event=b"i1",
                                            log_maxlen=10)
    assert sent.receivers == 3
    for sub in subs:
        await expect(sub, "config", b"e1")
        await expect(sub, "invalidate", b"i1")
        await sub.aclose()


async def test_the_daemon_index_and_its_records_share_a_slot(
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    from hotreload.transport.base import status_index, status_key

    _, primaries = transports
    assert key_slot(status_index(PREFIX).encode()) == key_slot(
        status_key(PREFIX, "host:1").encode())
    await primaries.write_status("host:1", b"{}", 30)
    try:
        assert await primaries.read_statuses() == [b"{}"]
    finally:
        await primaries.delete_status("host:1")


async def test_the_shard_channels_are_published_with_spublish(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    """A classic SUBSCRIBE to the config channel hears nothing: events stay in the shard."""
    _, primaries = transports
    ns = unique("spublish")
    shard = redis_cluster.shard_of(meta_key(ns))
    classic = aioredis.Redis(host="127.0.0.1", port=shard.primary.port)
    pubsub = classic.pubsub()
    try:
        await pubsub.subscribe(keys_for(ns, PREFIX).config_channel)
        assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"  # type: ignore[index]
        await create(primaries, ns=ns)
        assert await pubsub.get_message(timeout=0.3) is None
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await classic.aclose()


async def test_connections_closed_under_running_commands_fail_as_backend_errors(
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    """redis-py closes every node connection, in use or not, when a command meets CLUSTERDOWN
    (a shard failing over). Commands of other tasks on those connections fail as BackendError
    (or succeed on a retry), never with the closed stream's AttributeError/TypeError."""
    replicas, primaries = transports
    ns = unique("closed")
    await create(primaries, ns=ns)
    stop = asyncio.Event()
    other: list[BaseException] = []
    calls = 0

    async def reader(t: ClusterTransport) -> None:
        nonlocal calls
        while not stop.is_set():
            calls += 1
            try:
                await t.head(ns)
                await t.read_log(ns, 1)
            except BackendError:
                pass
            except Exception as exc:  # what must not happen
                other.append(exc)

    tasks = [asyncio.create_task(reader(t)) for t in (replicas, primaries) for _ in range(8)]
    try:
        for _ in range(100):
            for t in transports:
                await t.cluster.aclose()  # what redis-py does on CLUSTERDOWN
            await asyncio.sleep(0.002)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert calls > 32 and not other, (calls, other[:3])


async def test_the_role_check_never_uses_a_node_the_slot_map_dropped(
        redis_cluster: ClusterServers,
        transports: tuple[ClusterTransport, ClusterTransport]) -> None:
    """A refresh drops a node from the map while it resyncs (it comes back as a new object);
    the ROLE check must not open connections on the dropped object: nobody would close them."""
    replicas, _ = transports
    ns = unique("dropped")
    sub = replicas.subscription(ns)
    assert isinstance(sub, ClusterSubscription)
    try:
        await expect(sub, "subscribed")
        manager = replicas.cluster.nodes_manager
        assert sub._node is not None
        dropped = manager.nodes_cache.pop(sub._node.name)  # as a refresh that did not list it
        await dropped.disconnect()
        await sub.ping()
        await expect(sub, "pong")
        assert sub._probe is not None
        await sub._probe
        assert not any(c.is_connected for c in dropped._connections)
        manager.nodes_cache[dropped.name] = dropped
    finally:
        await sub.aclose()
