"""Throwaway Redis Cluster and Sentinel deployments on loopback, with the failures tests inflict.

`ClusterServers` runs six ``redis-server --cluster-enabled yes`` (three primaries, a replica
each); `SentinelServers` runs a primary, a replica and three sentinels. Every server lives in a
temp dir of its own, without persistence, on a free loopback port. The failure helpers (kill -9,
planned failover, moving a slot) return once the deployment has settled: every wait is a
condition with a deadline, never a sleep. They are synchronous: from a test's event loop, run
them with ``asyncio.to_thread`` so that the code under test keeps running meanwhile.

The session fixtures ``redis_cluster`` and ``redis_sentinel`` (tests/integration/conftest.py)
start one deployment per session and heal it before each test; a test isolates itself with its
own prefix and names the deployment in its config::

    {"redis": {"cluster": {"nodes": redis_cluster.addrs[:3]}}}     # or redis_cluster.url()
    {"redis": {"sentinel": {"master": MASTER, "nodes": redis_sentinel.nodes}}}
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.crc import key_slot

from tests.integration.servers import free_port

T = TypeVar("T")

#: Failure detection of the test deployments (milliseconds): short, but long enough that a
#: busy two-core machine does not see false failures.
CLUSTER_NODE_TIMEOUT_MS = 1500
SENTINEL_DOWN_AFTER_MS = 1000
SENTINEL_FAILOVER_TIMEOUT_MS = 4000
SETTLE = 30.0  # seconds a deployment may take to settle after a failure
MASTER = "mymaster"


def binary(name: str) -> str:
    """The path of ``name``: a missing binary fails the test run (never skips)."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                  else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed: the cluster and sentinel tests need it")
    return path


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = SETTLE) -> T:
    """Call ``probe`` until it returns something other than None (a Redis error or a
    LookupError counts as None); raise after ``timeout`` seconds, naming ``what``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
            if value is not None:
                return value
        except (redis.RedisError, OSError, LookupError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last})" if last else ""))
        time.sleep(0.05)


def bus_port_pair() -> int:
    """A free loopback port P whose cluster bus port P + 10000 is free too."""
    for _ in range(200):
        port = random.randrange(20000, 55000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class Server:
    """One ``redis-server`` process on a fixed loopback port, in its own temp dir; it can be
    killed and started again on the same port (keeping its dir, so a cluster node keeps its
    ``nodes.conf``)."""

    def __init__(self, args: Sequence[str] = (), *, conf: str | None = None,
                 sentinel: bool = False, cluster: bool = False) -> None:
        self.port = bus_port_pair() if cluster else free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hotreload-node-"))
        self.args = list(args)
        self.sentinel = sentinel
        self.conf: Path | None = None
        if conf is not None:
            self.conf = self.dir / "server.conf"
            self.conf.write_text(conf.format(port=self.port, dir=self.dir))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"<Server {self.addr}{'' if self.running else ' (down)'}>"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=timeout,
                           socket_timeout=timeout)

    def call(self, *args: Any) -> Any:
        """One command on a fresh connection."""
        with contextlib.closing(self.client()) as c:
            return c.execute_command(*args)

    def start(self) -> None:
        cmd = [binary("redis-server")]
        if self.conf is not None:
            cmd.append(str(self.conf))
        if self.sentinel:
            cmd.append("--sentinel")
        else:
            cmd += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        cmd += ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                "--logfile", str(self.dir / "server.log"), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool | None:
            if self.proc is not None and self.proc.poll() is not None:
                log = self.dir / "server.log"
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise RuntimeError(f"redis-server on port {self.port} exited: {tail}")
            return True if self.call("PING") else None

        wait_for(f"the server on port {self.port} to answer", answers, timeout=10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def info(self, section: str) -> dict[str, Any]:
        with contextlib.closing(self.client()) as c:
            return c.info(section)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- cluster

@dataclass(frozen=True)
class Shard:
    """One primary and its replicas, as the cluster sees them now."""

    primary: Server
    replicas: tuple[Server, ...]
    slots: tuple[tuple[int, int], ...]


class ClusterServers:
    """Six cluster nodes: three primaries with a replica each."""

    def __init__(self, size: int = 6) -> None:
        self.nodes = [Server(["--cluster-enabled", "yes",
                              "--cluster-config-file", "nodes.conf",
                              "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                              "--cluster-replica-validity-factor", "0",
                              "--cluster-allow-replica-migration", "no",
                              "--cluster-require-full-coverage", "no",
                              # replicas show in CLUSTER SLOTS once their offset moved
                              "--repl-ping-replica-period", "1"], cluster=True)
                      for _ in range(size)]

    # -------------------------------------------------------------- set-up

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run([binary("redis-cli"), "--cluster", "create",
                        *(n.addr for n in self.nodes), "--cluster-replicas", "1",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        self.wait_healthy()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    @property
    def addrs(self) -> list[str]:
        return [n.addr for n in self.nodes]

    def url(self, query: str = "") -> str:
        return "redis+cluster://" + ",".join(self.addrs) + "/" + (f"?{query}" if query else "")

    def by_port(self, port: int) -> Server:
        return next(n for n in self.nodes if n.port == port)

    def client(self) -> redis.RedisCluster:
        """A synchronous cluster client for the tests' own reads and writes."""
        return redis.RedisCluster(host="127.0.0.1", port=self.running()[0].port,
                                  socket_connect_timeout=2, socket_timeout=5)

    def running(self) -> list[Server]:
        return [n for n in self.nodes if n.running]

    def heal(self) -> None:
        """Start again any node a test left down, and wait for a healthy cluster."""
        for node in self.nodes:
            if not node.running:
                node.start()
        self.wait_healthy()

    # -------------------------------------------------------------- topology

    def shards(self, via: Server | None = None) -> list[Shard]:
        """The shards as ``via`` (default: any running node) sees them (CLUSTER SHARDS)."""
        node = via or self.running()[0]
        out = []
        for shard in node.call("CLUSTER", "SHARDS"):
            shard = _pairs(shard)
            slots = _flat_ranges(shard[b"slots"])
            primary, replicas = None, []
            for desc in shard[b"nodes"]:
                desc = _pairs(desc)
                if desc[b"health"] != b"online":  # "loading": not listed in CLUSTER SLOTS
                    continue
                server = self.by_port(int(desc[b"port"]))
                if desc[b"role"] == b"master":
                    primary = server
                else:
                    replicas.append(server)
            if primary is not None and slots:
                out.append(Shard(primary, tuple(replicas), slots))
        return out

    def shard_of_slot(self, slot: int) -> Shard:
        for shard in self.shards():
            if any(lo <= slot <= hi for lo, hi in shard.slots):
                return shard
        raise LookupError(f"no shard serves slot {slot}")

    def shard_of(self, key: str) -> Shard:
        return self.shard_of_slot(key_slot(key.encode()))

    def wait_healthy(self, timeout: float = SETTLE) -> None:
        """Every running node says ``cluster_state:ok`` and agrees on who owns every slot;
        three primaries serve all the slots, each with a replica whose link is up."""
        def healthy() -> bool | None:
            views = set()
            for node in self.running():
                if b"cluster_state:ok" not in node.call("CLUSTER", "INFO"):
                    return None
                views.add(tuple(sorted((s.primary.port, tuple(r.port for r in s.replicas),
                                        s.slots) for s in self.shards(node))))
            if len(views) != 1:
                return None
            (view,) = views
            if len(view) != 3 or sum(len(r) for _, r, _ in view) != len(self.running()) - 3:
                return None
            if sum(hi - lo + 1 for _, _, slots in view for lo, hi in slots) != 16384:
                return None
            for _primary, replicas, _slots in view:
                for port in replicas:
                    if self.by_port(port).info("replication").get(
                            "master_link_status") != "up":
                        return None
            return True
        wait_for("the cluster to be healthy", healthy, timeout)

    # -------------------------------------------------------------- failures

    def wait_replicated(self, key: str) -> None:
        """Wait until the replicas of ``key``'s shard have applied what its primary holds."""
        shard = self.shard_of(key)
        wait_for("the replicas to catch up", lambda: _caught_up(shard.primary, shard.replicas))

    def kill_primary_of(self, key: str) -> tuple[Server, Server]:
        """kill -9 the primary that owns ``key``'s slot and wait for its replica to take over.
        Returns (the killed node, the promoted replica). The killed node stays down: call
        `restart` to bring it back (it rejoins as a replica)."""
        shard = self.shard_of(key)
        victim, heir = shard.primary, shard.replicas[0]
        victim.kill()
        wait_for("the replica to be promoted",
                 lambda: True if heir.info("replication")["role"] == "master" and
                 self.shard_of(key).primary is heir else None)
        return victim, heir

    def kill_replica_of(self, key: str) -> Server:
        """kill -9 the replica of ``key``'s shard; it stays down (see `restart`)."""
        victim = self.shard_of(key).replicas[0]
        victim.kill()
        return victim

    def restart(self, node: Server) -> None:
        """Start a killed node again (empty, with its nodes.conf) and wait for a healthy
        cluster: it rejoins as a replica of its former replica."""
        node.start()
        self.wait_healthy()

    def failover(self, key: str) -> tuple[Server, Server]:
        """CLUSTER FAILOVER on the replica of ``key``'s shard (a planned switch); returns
        (the old primary, the new one) once the cluster is healthy again."""
        shard = self.shard_of(key)
        old, new = shard.primary, shard.replicas[0]
        new.call("CLUSTER", "FAILOVER")
        wait_for("the planned failover",
                 lambda: True if new.info("replication")["role"] == "master" and
                 all(self.shard_of(key).primary is new for _ in (0,)) else None)
        self.wait_healthy()
        return old, new

    def move_slot(self, key: str, on_batch: Callable[[], None] | None = None) -> tuple[
            Server, Server]:
        """Reshard ``key``'s slot to another primary, as ``redis-cli --cluster reshard``
        does: IMPORTING on the target, MIGRATING on the source, MIGRATE the slot's keys in
        batches (calling ``on_batch`` between them), then SETSLOT NODE everywhere. Returns
        (source, target) once every node agrees."""
        slot = key_slot(key.encode())
        source = self.shard_of_slot(slot)
        target = next(s for s in self.shards() if s.primary is not source.primary)
        src, dst = source.primary, target.primary
        src_id = src.call("CLUSTER", "MYID").decode()
        dst_id = dst.call("CLUSTER", "MYID").decode()
        dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            names = src.call("CLUSTER", "GETKEYSINSLOT", slot, 10)
            if not names:
                break
            src.call("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *names)
            if on_batch is not None:
                on_batch()
        others = [s.primary for s in self.shards() if s.primary not in (src, dst)]
        for node in (dst, src, *others):  # the replicas learn it from their primaries
            node.call("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        wait_for("every node to agree on the slot's owner",
                 lambda: True if all(self.shard_of_slot(slot).primary is dst
                                     for _ in (0,)) and self._agree(slot, dst) else None)
        return src, dst

    def _agree(self, slot: int, owner: Server) -> bool:
        for node in self.running():
            for shard in self.shards(node):
                if any(lo <= slot <= hi for lo, hi in shard.slots) and shard.primary is not owner:
                    return False
        return True


def _caught_up(primary: Server, replicas: Sequence[Server]) -> bool | None:
    offset = int(primary.info("replication")["master_repl_offset"])
    ok = all(int(r.info("replication").get("slave_repl_offset", -1)) >= offset for r in replicas)
    return True if ok else None


def _pairs(flat: Any) -> dict[bytes, Any]:
    if isinstance(flat, dict):
        return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in flat.items()}
    it = iter(flat)
    return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in zip(it, it,
                                                                              strict=True)}


def _flat_ranges(flat: Sequence[Any]) -> tuple[tuple[int, int], ...]:
    it = iter(flat)
    return tuple((int(lo), int(hi)) for lo, hi in zip(it, it, strict=True))


@contextlib.contextmanager
def cluster_servers() -> Iterator[ClusterServers]:
    cluster = ClusterServers()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# ---------------------------------------------------------------------- sentinel

_SENTINEL_CONF = """\
port {port}
bind 127.0.0.1
dir {dir}
sentinel monitor %(master)s 127.0.0.1 %(master_port)d 2
sentinel down-after-milliseconds %(master)s %(down)d
sentinel failover-timeout %(master)s %(failover)d
sentinel parallel-syncs %(master)s 1
"""


class SentinelServers:
    """A primary, a replica and three sentinels monitoring them as `MASTER`."""

    def __init__(self) -> None:
        self.data = [Server(), Server()]
        self.sentinels: list[Server] = []

    def start(self) -> None:
        first, second = self.data
        first.start()
        second.args = ["--replicaof", "127.0.0.1", str(first.port)]
        second.start()
        conf = _SENTINEL_CONF % {"master": MASTER, "master_port": first.port,
                                 "down": SENTINEL_DOWN_AFTER_MS,
                                 "failover": SENTINEL_FAILOVER_TIMEOUT_MS}
        self.sentinels = [Server(conf=conf, sentinel=True) for _ in range(3)]
        for s in self.sentinels:
            s.start()
        self.wait_healthy()

    def close(self) -> None:
        for server in [*self.sentinels, *self.data]:
            server.close()

    @property
    def nodes(self) -> list[str]:
        """The sentinels' addresses."""
        return [s.addr for s in self.sentinels]

    def master(self) -> Server:
        """The data node every sentinel names as the master now."""
        ports = {int(s.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)[1])
                 for s in self.sentinels}
        if len(ports) != 1:
            raise LookupError(f"the sentinels disagree on the master: {sorted(ports)}")
        return next(d for d in self.data if d.port in ports)

    def replica(self) -> Server:
        master = self.master()
        return next(d for d in self.data if d is not master)

    def wait_healthy(self, timeout: float = SETTLE) -> None:
        """Every sentinel names one master, sees the replica and the two other sentinels; the
        master says it is one, and the replica's link to it is up."""
        def healthy() -> bool | None:
            master = self.master()
            replica = self.replica()
            if not (master.running and replica.running):
                return None
            for s in self.sentinels:
                state = _pairs(s.call("SENTINEL", "MASTER", MASTER))
                flags = state[b"flags"]
                if (flags != b"master" or int(state[b"num-slaves"]) < 1
                        or int(state[b"num-other-sentinels"]) < 2):
                    return None
                replicas = [_pairs(r) for r in s.call("SENTINEL", "REPLICAS", MASTER)]
                if not any(int(r[b"port"]) == replica.port and r[b"flags"] == b"slave"
                           for r in replicas):
                    return None
            if master.info("replication")["role"] != "master":
                return None
            rep = replica.info("replication")
            if rep["role"] != "slave" or rep.get("master_port") != master.port or rep.get(
                    "master_link_status") != "up":
                return None
            return True
        wait_for("the sentinel deployment to be healthy", healthy, timeout)

    def wait_replicated(self) -> None:
        """Wait until the replica has applied what the master holds."""
        wait_for("the replica to catch up", lambda: _caught_up(self.master(), [self.replica()]))

    def failover(self, *, hold_ms: int = 0) -> tuple[Server, Server]:
        """SENTINEL FAILOVER; returns (old master, new master) once every sentinel names the
        new master and it says it is one. The old master stays a master, with its clients,
        until the sentinels reconfigure it: up to 10 s later (`heal` does it at once), and not
        before ``hold_ms`` (it is paused, CLIENT PAUSE ALL, that long: its clients wait)."""
        old = self.master()
        self.sentinels[0].call("SENTINEL", "FAILOVER", MASTER)
        wait_for("the sentinels to switch the master",
                 lambda: True if self._switched_from(old) else None)
        if hold_ms:
            old.call("CLIENT", "PAUSE", hold_ms, "ALL")
        new = self.master()
        wait_for("the promoted replica to be a master",
                 lambda: True if new.info("replication")["role"] == "master" else None)
        return old, new

    def kill_master(self) -> tuple[Server, Server]:
        """kill -9 the master; returns (killed, promoted) once the sentinels promoted the
        replica. The killed server stays down: `restart` brings it back as a replica."""
        old = self.master()
        old.kill()
        wait_for("the sentinels to promote the replica",
                 lambda: True if self._switched_from(old) else None)
        new = self.master()
        wait_for("the promoted replica to be a master",
                 lambda: True if new.info("replication")["role"] == "master" else None)
        return old, new

    def restart(self, server: Server) -> None:
        """Start a killed data node again (empty) as a replica of the master, as its config
        file rewritten by the sentinels would say."""
        master = self.master()
        server.args = ["--replicaof", "127.0.0.1", str(master.port)]
        server.start()
        self.wait_healthy()

    def heal(self) -> None:
        """Bring the deployment back to a master and a connected replica: start a data node
        a test left down, and point a former master at the new one (what the sentinels do at
        their next INFO round, up to 10 s later; done now to keep the tests short)."""
        for server in self.data:
            if not server.running:
                self.restart(server)
        master = self.master()
        for server in self.data:
            if server is not master and server.info("replication")["role"] == "master":
                server.call("REPLICAOF", "127.0.0.1", master.port)
        self.wait_healthy()

    def _switched_from(self, old: Server) -> bool:
        try:
            return self.master() is not old
        except LookupError:
            return False


@contextlib.contextmanager
def sentinel_servers() -> Iterator[SentinelServers]:
    deployment = SentinelServers()
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.close()
