"""Rows: fan-out to 1,000 and 5,000 subscriber connections on one primary vs a 3-shard cluster.

Each topology runs on throwaway ``redis-server`` processes started here (never the shared
server): one primary, or a Redis Cluster of three primaries with a replica each (the tests'
`ClusterServers`), every node with a high ``maxclients``. ``SUBSCRIBERS`` subscribers are spread
over `NAMESPACES` namespaces and `PROCS` spawned processes (many `AsyncSubscriber` per asyncio
loop; on the cluster they read and subscribe on replicas, ``read_from_replicas: true``). The
sender publishes to the namespaces round-robin at `RATE`/s; the latency of an event is until
the LAST subscriber of its namespace applied it.

The same-run baseline is raw redis-py: PUBLISH → raw pubsub connections on the primary, and on
the cluster SPUBLISH on the channel's primary → raw SSUBSCRIBE connections on a replica of the
channel's shard (chosen at random per subscriber, as hotreload does).

Redis CPU per node is ``used_cpu_sys + used_cpu_user`` (INFO cpu) over two windows of the same
run: an idle window (subscribers connected, nothing published: heartbeats and the backstop's
version checks) and the publishing window. The memory rows publish a 100-key and a 10,000-key
namespace to a throwaway server and sum ``MEMORY USAGE`` of its keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ._hosts import _hotreload_listeners, _new, _Recorder
from ._stats import (
    Latency,
    Options,
    Pacer,
    Row,
    fanout_latency,
    fmt_ns,
    fmt_ratio,
    render,
    unique,
)

NAMESPACES = 12
PROCS = 4
RATE = 10.0
MAXCLIENTS = 19_000  # under this machine's RLIMIT_NOFILE (20,000) minus Redis's reserve
START_CONCURRENCY = 20  # subscribers starting at once per process
WARMUP_ROUNDS = 2  # events per namespace before the windows
EVENTS = 300  # measured events (full size)
IDLE_SECONDS = 10.0  # the idle window (full size)
#: Subscriber tuning of the fleet: the defaults (a PING after 1 s of silence, a version check
#: every 5 s) make 5,000 subscribers send 5,000 PINGs/s and 1,000 checks/s, which the shared
#: two-core machine cannot run in four Python processes next to Redis; timeouts are long so
#: that a starved event loop does not turn into reconnect storms. The idle window measures
#: what this background costs Redis; it scales with 1/heartbeat_interval.
TUNING = {"heartbeat_interval": 5.0, "heartbeat_timeout": 15.0,
          "version_check_interval": 30.0, "command_timeout": 15.0}
TIMEOUTS = {"connect_timeout": 15.0, "socket_timeout": 15.0}


# ---------------------------------------------------------------------- servers

@dataclass
class Topology:
    """A throwaway deployment: its name, the hotreload config, and its nodes."""

    name: str
    config: dict[str, Any]
    nodes: list[Any]  # tests.integration.cluster_servers.Server
    cluster: Any = None  # ClusterServers, for the cluster
    roles: dict[int, str] = field(default_factory=dict)  # port -> "primary"/"replica"

    def primary_for(self, key: str) -> Any:
        if self.cluster is None:
            return self.nodes[0]
        return self.cluster.shard_of(key).primary

    def reader_for(self, key: str, rng: random.Random) -> Any:
        """Where a subscriber of ``key``'s slot listens: a random replica (cluster) or the
        primary."""
        if self.cluster is None:
            return self.nodes[0]
        shard = self.cluster.shard_of(key)
        return rng.choice(shard.replicas or (shard.primary,))


def _server_args() -> list[str]:
    return ["--maxclients", str(MAXCLIENTS)]


@contextlib.contextmanager
def single() -> Iterator[Topology]:
    from tests.integration.cluster_servers import Server

    node = Server(_server_args())
    try:
        node.start()
        yield Topology("one primary", {"redis": {"url": f"redis://{node.addr}/0", **TIMEOUTS},
                                       "subscriber": TUNING}, [node],
                       roles={node.port: "primary"})
    finally:
        node.close()


@contextlib.contextmanager
def cluster() -> Iterator[Topology]:
    from tests.integration.cluster_servers import ClusterServers

    servers = ClusterServers()
    for node in servers.nodes:
        node.args += _server_args()
    try:
        servers.start()
        roles = {}
        for shard in servers.shards():
            roles[shard.primary.port] = "primary"
            for r in shard.replicas:
                roles[r.port] = "replica"
        yield Topology("3-shard cluster, subscribers on replicas",
                       {"redis": {"cluster": {"nodes": servers.addrs[:3],
                                              "read_from_replicas": True},
                                  **TIMEOUTS},
                        "subscriber": TUNING},
                       list(servers.nodes), servers, roles)
    finally:
        servers.close()


def cpu_seconds(nodes: list[Any]) -> dict[int, float]:
    out = {}
    for node in nodes:
        info = node.info("cpu")
        out[node.port] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return out


def clients(nodes: list[Any]) -> dict[int, tuple[int, int]]:
    """port -> (connected clients, bytes Redis holds for normal clients: mem_clients_normal)."""
    out = {}
    for n in nodes:
        info = n.info("all")
        out[n.port] = (int(info["connected_clients"]), int(info["mem_clients_normal"]))
    return out


# ---------------------------------------------------------------------- subscriber hosts

def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _raw_sub(addr: str, channel: str, sharded: bool, rec: _Recorder,
                   started: asyncio.Event) -> None:
    import redis.asyncio as aioredis

    host, port = addr.rsplit(":", 1)
    client = aioredis.Redis(host=host, port=int(port))
    ps = client.pubsub(ignore_subscribe_messages=True)
    await (ps.ssubscribe(channel) if sharded else ps.subscribe(channel))
    started.set()
    try:
        while True:
            msg = await ps.get_message(timeout=1.0)
            if msg is not None and msg["type"] in ("message", "smessage"):
                rec.add(int(msg["data"]))
    finally:
        await ps.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def _host(kind: str, plan: list[tuple[str, str]], config: dict[str, Any],
                sharded: bool, conn: Connection) -> None:
    """``plan``: one (namespace or channel, listening node address) per subscriber."""
    recs = [_new() for _ in plan]
    tasks: list[asyncio.Task[None]] = []
    subs: list[Any] = []
    gate = asyncio.Semaphore(START_CONCURRENCY)
    if kind == "raw":
        events = [asyncio.Event() for _ in plan]

        async def start_raw(i: int) -> None:
            async with gate:
                name, addr = plan[i]
                tasks.append(asyncio.create_task(
                    _raw_sub(addr, name, sharded, recs[i], events[i])))
                await asyncio.wait_for(events[i].wait(), 60)

        await asyncio.gather(*(start_raw(i) for i in range(len(plan))))
    else:
        from hotreload import AsyncSubscriber
        from hotreload.config import build_config

        cfg = build_config(config)

        async def start_hr(i: int) -> None:
            sub: Any = AsyncSubscriber(cfg, namespace=plan[i][0])
            _hotreload_listeners(sub, recs[i])
            subs.append(sub)
            async with gate:
                await sub.start(600)

        try:
            await asyncio.gather(*(start_hr(i) for i in range(len(plan))))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:300]))
            await asyncio.gather(*(s.aclose() for s in subs), return_exceptions=True)
            return
    loop = asyncio.get_running_loop()
    conn.send(("ready",))
    _, targets, timeout = await loop.run_in_executor(None, conn.recv)
    deadline = time.monotonic() + timeout
    wanted = [targets[name] for name, _ in plan]
    while (not all(r.high >= w for r, w in zip(recs, wanted, strict=True))  # noqa: ASYNC110
           and time.monotonic() < deadline):
        await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(s.aclose() for s in subs), return_exceptions=True)
    conn.send(("records", [r.records for r in recs]))


def host_main(kind: str, plan: list[tuple[str, str]], config: dict[str, Any], sharded: bool,
              conn: Connection) -> None:
    _raise_nofile()
    asyncio.run(_host(kind, plan, config, sharded, conn))


class ScaleHosts:
    def __init__(self, kind: str, plan: list[tuple[str, str]], config: dict[str, Any],
                 sharded: bool, procs: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        self.plans = [plan[i::procs] for i in range(procs)]
        for part in self.plans:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=host_main, args=(kind, part, config, sharded, child),
                               daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def wait_ready(self, timeout: float) -> None:
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            if not pipe.poll(timeout):
                raise RuntimeError(f"subscriber host {proc.pid} not ready after {timeout}s")
            msg = pipe.recv()
            if msg[0] == "error":
                raise RuntimeError(f"subscriber host {proc.pid} failed to start: {msg[1]}")

    def start_clock(self, targets: dict[str, int], timeout: float) -> None:
        for pipe in self.pipes:
            pipe.send(("finish", targets, timeout))

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the subscriber processes used so far (/proc)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for proc in self.procs:
            with open(f"/proc/{proc.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def collect(self, timeout: float) -> dict[str, list[list[tuple[int, int]]]]:
        """Records per namespace."""
        out: dict[str, list[list[tuple[int, int]]]] = {}
        for pipe, part in zip(self.pipes, self.plans, strict=True):
            if not pipe.poll(timeout + 120):
                raise RuntimeError("subscriber host did not report")
            _, recs = pipe.recv()
            for (name, _), r in zip(part, recs, strict=True):
                out.setdefault(name, []).append(r)
        self.close()
        return out

    def close(self) -> None:
        for proc in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


# ---------------------------------------------------------------------- senders

async def _senders(kind: str, topo: Topology, names: list[str]) -> tuple[
        list[Any], list[Any]]:
    """One send(seq) per namespace, and the closers."""
    sends: list[Any] = []
    closers: list[Any] = []
    if kind == "hotreload":
        from hotreload import AsyncPublisher
        from hotreload.config import build_config

        cfg = build_config(topo.config)
        for name in names:
            pub = AsyncPublisher(cfg, namespace=name)
            sends.append(lambda seq, p=pub: p.publish({"bench.seq": seq}))
            closers.append(pub.aclose)
        return sends, closers
    import redis.asyncio as aioredis

    by_port: dict[int, Any] = {}
    for name in names:
        node = topo.primary_for(name)
        if node.port not in by_port:
            by_port[node.port] = aioredis.Redis(host="127.0.0.1", port=node.port)
            closers.append(by_port[node.port].aclose)
        client = by_port[node.port]
        if topo.cluster is None:
            sends.append(lambda seq, c=client, ch=name: c.publish(ch, str(seq)))
        else:
            sends.append(lambda seq, c=client, ch=name: c.execute_command(
                "SPUBLISH", ch, str(seq)))
    return sends, closers


@dataclass
class Result:
    latency: Latency
    idle_cpu: dict[int, float]  # port -> CPU seconds per second (idle window)
    busy_cpu: dict[int, float]  # port -> CPU seconds per second (publishing window)
    clients: dict[int, tuple[int, int]]
    busy_s: float  # length of the publishing window
    sub_cpu: float  # subscriber processes' CPU seconds per second, publishing window
    sub_idle: float  # the same, idle window
    ready_s: float  # from starting the subscriber processes to all subscribers ready
    deliveries: int  # events x subscribers of their namespace


def measure(opts: Options, topo: Topology, kind: str, subscribers: int) -> Result:
    procs = min(PROCS if not opts.quick else 2, subscribers)
    n = opts.n(EVENTS, 24)
    idle = IDLE_SECONDS if not opts.quick else 1.0
    tag = "hr" if kind == "hotreload" else "raw"
    base = [unique(f"bench-scale-{tag}") for _ in range(NAMESPACES)]
    # Raw channels carry the hash tag of a namespace, so they spread over the slots the same way.
    names = base if kind == "hotreload" else [f"{{{b}}}:raw" for b in base]
    rng = random.Random(7)
    plan = [(names[i % NAMESPACES], topo.reader_for(names[i % NAMESPACES], rng).addr)
            for i in range(subscribers)]
    if kind == "hotreload":
        _seed(topo, names)
    hosts = ScaleHosts(kind, plan, topo.config, topo.cluster is not None, procs)
    try:
        started = time.monotonic()
        hosts.wait_ready(timeout=900)
        ready_s = time.monotonic() - started
        sent, windows, cl = asyncio.run(_send(kind, topo, names, n, idle,
                                                   RATE * (2 if opts.quick else 1), hosts))
        targets = {name: max(s for s, ns in _owner(sent, names).items() if ns == name)
                   for name in names}
        hosts.start_clock(targets, 60.0)
    except BaseException:
        hosts.close()
        raise
    records = hosts.collect(60.0)
    lat = Latency(rate=windows["rate"])
    for name in names:
        mine = {s: t for s, t in sent.items() if names[s % NAMESPACES] == name}
        part = fanout_latency(records.get(name, []), mine)
        lat.samples.extend(part.samples)
        lat.lost += part.lost
    per_ns = [subscribers // NAMESPACES + (1 if i < subscribers % NAMESPACES else 0)
              for i in range(NAMESPACES)]
    deliveries = sum(per_ns[s % NAMESPACES] for s in sent)
    return Result(lat, windows["idle"], windows["busy"], cl, windows["busy_s"],
                  windows["sub_busy"], windows["sub_idle"], ready_s, deliveries)


def _owner(sent: dict[int, int], names: list[str]) -> dict[int, str]:
    return {s: names[s % NAMESPACES] for s in sent}


def _seed(topo: Topology, names: list[str]) -> None:
    """Give each namespace a document, so that subscribers start on a loaded state."""
    from hotreload import AsyncPublisher
    from hotreload.config import build_config

    async def main() -> None:
        cfg = build_config(topo.config)
        for name in names:
            async with AsyncPublisher(cfg, namespace=name) as pub:
                await pub.replace({"bench": {"seq": -1}})

    asyncio.run(main())


async def _send(kind: str, topo: Topology, names: list[str], n: int, idle: float,
                rate: float, hosts: ScaleHosts
                ) -> tuple[dict[int, int], dict[str, Any], dict[int, tuple[int, int]]]:
    sends, closers = await _senders(kind, topo, names)
    warm = WARMUP_ROUNDS * NAMESPACES
    sent: dict[int, int] = {}
    windows: dict[str, Any] = {}
    try:
        for seq in range(warm):
            await sends[seq % NAMESPACES](seq)
        await asyncio.sleep(1.0)
        cl = clients(topo.nodes)
        c0, s0 = cpu_seconds(topo.nodes), hosts.cpu_seconds()
        t0 = time.monotonic()
        await asyncio.sleep(idle)
        c1, s1 = cpu_seconds(topo.nodes), hosts.cpu_seconds()
        t1 = time.monotonic()
        pacer = Pacer(rate)
        for i in range(n):
            await pacer.await_(i)
            seq = warm + i
            sent[seq] = time.monotonic_ns()
            await sends[seq % NAMESPACES](seq)
        windows["rate"] = pacer.achieved(n)
        await asyncio.sleep(0.5)  # the last deliveries
        c2, s2 = cpu_seconds(topo.nodes), hosts.cpu_seconds()
        t2 = time.monotonic()
        windows["sub_idle"] = (s1 - s0) / (t1 - t0)
        windows["sub_busy"] = (s2 - s1) / (t2 - t1)
        windows["idle"] = {p: (c1[p] - c0[p]) / (t1 - t0) for p in c0}
        windows["busy"] = {p: (c2[p] - c1[p]) / (t2 - t1) for p in c0}
        windows["busy_s"] = t2 - t1
    finally:
        for close in closers:
            await close()
    return sent, windows, cl


# ---------------------------------------------------------------------- memory

def namespace_memory(opts: Options, keys: int) -> tuple[int, int]:
    """(bytes, key count) of a namespace holding a ``keys``-leaf document, on a fresh server."""
    from hotreload import AsyncPublisher
    from hotreload.config import build_config

    from .resync import document

    with single() as topo:
        name = unique("bench-scale-mem")
        cfg = build_config(topo.config)

        async def main() -> None:
            async with AsyncPublisher(cfg, namespace=name) as pub:
                await pub.replace(document(keys))

        asyncio.run(main())
        client = topo.nodes[0].client()
        try:
            found = list(client.scan_iter(match=f"*{name}*", count=1000))
            total = sum(int(client.memory_usage(k, samples=0) or 0) for k in found)
        finally:
            client.close()
        return total, len(found)


# ---------------------------------------------------------------------- rows

def _cpu(topo: Topology, per_node: dict[int, float]) -> str:
    parts = []
    for node in topo.nodes:
        role = topo.roles.get(node.port, "?")
        parts.append(f"{role} {per_node.get(node.port, 0.0) * 100:.1f}%")
    return ", ".join(parts)


def _per_delivery(r: Result) -> float:
    """Redis CPU (all nodes) per delivered message, ns, above the idle background."""
    extra = (sum(r.busy_cpu.values()) - sum(r.idle_cpu.values())) * r.busy_s
    return extra * 1e9 / r.deliveries if r.deliveries else float("nan")


def _rows_for(topo: Topology, subscribers: int, hr: Result, base: Result) -> list[Row]:
    r99 = hr.latency.p99 / base.latency.p99 if base.latency.samples else float("nan")
    r50 = hr.latency.p50 / base.latency.p50 if base.latency.samples else float("nan")
    shards = "SPUBLISH → raw SSUBSCRIBE on replicas" if topo.cluster else "PUBLISH → raw SUBSCRIBE"
    conns_hr = sum(c for c, _ in hr.clients.values())
    conns_raw = sum(c for c, _ in base.clients.values())
    mem_hr = sum(m for _, m in hr.clients.values()) / max(1, conns_hr)
    mem_raw = sum(m for _, m in base.clients.values()) / max(1, conns_raw)
    rows = [Row(
        f"scale: {subscribers:,} subscribers / {NAMESPACES} namespaces, {topo.name}, "
        f"@ {hr.latency.rate:.0f}/s round-robin, until the last applied",
        hr.latency.describe(), base.latency.describe(),
        f"p99 {fmt_ratio(r99)} (p50 {fmt_ratio(r50)})", "report", "n/a",
        f"sent at {hr.latency.rate:,.1f}/s; n={len(hr.latency.samples)}; baseline: redis-py "
        f"{shards}; Redis connections (all nodes): hotreload {conns_hr:,}, raw {conns_raw:,}; "
        f"Redis memory per connection: {mem_hr:,.0f} B vs {mem_raw:,.0f} B; all subscribers "
        f"ready after {hr.ready_s:.0f} s (raw {base.ready_s:.0f} s)",
        "scale")]
    rows.append(Row(
        f"scale: Redis CPU per node, {subscribers:,} subscribers, {topo.name} "
        "(idle → publishing)",
        f"idle: {_cpu(topo, hr.idle_cpu)}; publishing: {_cpu(topo, hr.busy_cpu)}",
        f"idle: {_cpu(topo, base.idle_cpu)}; publishing: {_cpu(topo, base.busy_cpu)}",
        f"per delivered message: {fmt_ns(_per_delivery(hr))} vs {fmt_ns(_per_delivery(base))}",
        "report", "n/a",
        f"% of one core (INFO cpu sys+user); idle = subscribers connected, nothing published; "
        f"deliveries: {hr.deliveries:,}; subscriber processes used "
        f"{hr.sub_idle * 100:.0f}% → {hr.sub_cpu * 100:.0f}% (raw {base.sub_idle * 100:.0f}% → "
        f"{base.sub_cpu * 100:.0f}%) of one core (idle → publishing); subscriber tuning: "
        f"heartbeat_interval {TUNING['heartbeat_interval']:g} s, version_check_interval "
        f"{TUNING['version_check_interval']:g} s",
        "scale"))
    return rows


def run(opts: Options) -> list[Row]:
    sizes = (24,) if opts.quick else (1_000, 5_000)
    rows: list[Row] = []
    for topology in (single, cluster):
        with topology() as topo:
            for subscribers in sizes:
                try:
                    base = measure(opts, topo, "raw", subscribers)
                    hr = measure(opts, topo, "hotreload", subscribers)
                    got = _rows_for(topo, subscribers, hr, base)
                except Exception as exc:  # keep the other sizes' results
                    got = [Row(f"scale: {subscribers:,} subscribers, {topo.name}",
                               f"error: {type(exc).__name__}: {exc}"[:300], "", "", "report",
                               "n/a", "", "scale")]
                print(render(got), file=sys.stderr, flush=True)  # progress: ~2 min per size
                rows.extend(got)
    for keys in (100, 10_000):
        size, count = namespace_memory(opts, keys)
        rows.append(Row(
            f"scale: Redis memory of a namespace of {keys:,} keys (after one publish)",
            f"{size / 1024:,.1f} KiB in {count} Redis keys", "", "", "report", "n/a",
            "sum of MEMORY USAGE … SAMPLES 0 over the namespace's keys (head, leaves, checkpoint, "
            "change log); "
            "the change log adds one entry per publish up to its cap", "scale"))
    return rows
