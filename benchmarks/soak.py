"""``python -m benchmarks.soak [--short] [--seed N] [--events N] [--pods N]``: a seeded,
randomized fault-injection soak of the whole system, checked by an independent checker.

It starts a throwaway redis-server and (when the PostgreSQL server binaries are there) a
throwaway PostgreSQL cluster, two daemons (``hotreload daemon``: a file source and the
PostgreSQL source, leader election), and several pods in their own processes, each behind its
own fault proxy (benchmarks/faultproxy.py). Traffic: direct publishes, file edits, settings-table
updates, NOTIFY invalidations and cache row writes with their invalidations. Faults, drawn with
the seed: a pod's links killed (CLIENT KILL), frozen or black-holed; Redis restarted (killed or
shut down, with or without appendonly); PostgreSQL restarted; the leader daemon killed.

The checker (benchmarks/_soak_check.py) reads every commit from the change logs as it happens
and compares each pod's samples with them: stale reads beyond the bound, regressions, and
half-applied states (target: 0 of each). Exit status 1 if any. docs/guarantees.md has the
bounds and the figures of a long run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

from ._soak_check import Commit, History, Read, Report, Sample, check
from ._soak_pod import pod_main
from ._soak_servers import PgCluster, RedisProc
from .faultproxy import FaultProxy

PREFIX = "soak"
DIRECT, FILE_NS, PG_NS = "soak-direct", "soak-file", "soak-pg"
TIMINGS = {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.5, "version_check_interval": 1.0,
           "reconnect_backoff_max": 0.5, "command_timeout": 1.0}
POLL, RECHECK = 0.25, 0.5  # hotreload.subscriber.core POLL_SECONDS, RECHECK_SECONDS
#: A dead link is noticed within this (docs/guarantees.md).
DETECTION = TIMINGS["heartbeat_interval"] + TIMINGS["heartbeat_timeout"] + POLL
#: After a fault heals, a pod is resynced within this: a reconnect attempt in flight gives up,
#: the reader's backoff, a resync attempt in flight, the syncer's backoff (docs/guarantees.md).
HEAL = (POLL + TIMINGS["heartbeat_timeout"] + 2 * TIMINGS["reconnect_backoff_max"]
        + TIMINGS["command_timeout"])
#: What only the backstop notices (nothing dropped the link) is caught within this.
BACKSTOP = TIMINGS["version_check_interval"] + RECHECK + TIMINGS["command_timeout"]
SLACK = 1.25  # scheduling on a loaded machine (two cores shared by every process)
#: A fault window: from the fault's start to its end plus this.
WINDOW = HEAL + SLACK
#: Outside fault windows, a pod serving a state older than a commit made this long ago is stale.
BOUND = BACKSTOP + SLACK
ROW_KEYS = [f"r{i}" for i in range(30)]
KINDS = ("kill", "freeze", "blackhole", "redis-restart", "pg-restart", "leader-kill")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="CI mode: ~60-90 s, a few faults "
                   "of each kind")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--events", type=int, default=100_000,
                   help="long mode: run until this many events (config versions and "
                        "invalidations) were committed")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of traffic (default: 50 in short mode, until --events)")
    p.add_argument("--pods", type=int, default=None, help="pod processes (3 short, 4 long)")
    p.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (logs, debug.json) even without violations")
    return p.parse_args(argv)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.short: bool = args.short
        self.seed: int = args.seed
        self.rng = random.Random(args.seed)
        self.traffic_rng = random.Random(args.seed * 7919 + 1)
        self.pods_n: int = args.pods or (3 if self.short else 4)
        self.tmp = Path(tempfile.mkdtemp(prefix="hotreload-soak-"))
        self.key = f"soak-key-{args.seed}"
        self.redis = RedisProc(self.tmp / "redis")
        self.pg: PgCluster | None = None
        if not args.no_postgres and PgCluster.available():
            self.pg = PgCluster(Path(tempfile.mkdtemp(prefix="hotreload-soak-pg-")))
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.proxies: list[FaultProxy] = []
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self.history = History()
        self.samples: list[Sample] = []
        self.reads: list[Read] = []
        self.latest: dict[tuple[int, str], tuple[str | None, int]] = {}
        self.writes: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.windows: dict[int, list[tuple[float, float]]] = defaultdict(list)
        self.faults: Counter[str] = Counter()
        self.timeline: list[tuple[float, float, str, str]] = []
        self.last_detail = ""
        self.notes: Counter[str] = Counter()
        self.invalidations = 0
        self.stopping = False
        self.done_stats: dict[int, Any] = {}
        self.file = self.tmp / "files" / "settings.yaml"
        self.rows = self.tmp / "rows"

    # ------------------------------------------------------------------ setup

    def config_data(self, url: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "redis": {"url": url}, "prefix": PREFIX, "namespace": PG_NS,
            "security": {"hmac_key": self.key}, "subscriber": dict(TIMINGS),
            "daemon": {"http": None, "reconcile_interval": 2.0, "redis_backoff_max": 0.5},
            "sources": {"files": [{"path": str(self.file), "namespace": FILE_NS}]},
        }
        if self.pg is not None:
            data["postgres"] = {
                "dsn": self.pg.url, "channels": [{"channel": "soak_inv", "namespace": PG_NS}],
                "heartbeat_interval": 0.5, "heartbeat_timeout": 2.0,
                "reconnect_backoff_max": 0.5, "connect_timeout": 2,
                "leader_poll_interval": 0.2, "leader_check_interval": 0.5}
        return data

    def start(self) -> None:
        from hotreload.config import build_config

        self.redis.start(appendonly=False)
        if self.pg is not None:
            self.pg.init()
            self.pg.start()
        self.config = build_config(self.config_data(self.redis.url))
        if self.pg is not None:
            from hotreload.daemon import db

            asyncio.run(db.install(self.pg.url))
        self.file.parent.mkdir()
        self.file_doc: dict[str, Any] = {"f0": 0}
        self._write_file()
        self.rows.mkdir()
        for name in ROW_KEYS:
            (self.rows / name).write_text("0")
        self.config_path = self.tmp / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config_data(self.redis.url)))
        for _ in range(2):
            self.start_daemon()
        ctx = mp.get_context("spawn")
        namespaces = [DIRECT, FILE_NS] + ([PG_NS] if self.pg is not None else [])
        for i in range(self.pods_n):
            proxy = FaultProxy(target_port=self.redis.port, name=f"soak-proxy-{i}")
            self.proxies.append(proxy)
            parent, child = ctx.Pipe()
            spec = {"index": i, "url": f"{proxy.url}?client_name=soak-pod-{i}",
                    "prefix": PREFIX, "hmac_key": self.key, "timings": TIMINGS,
                    "namespaces": namespaces, "cache_namespace": DIRECT,
                    "rows_dir": str(self.rows), "row_keys": ROW_KEYS,
                    "seed": self.seed * 100 + i, "sample_interval": 0.05,
                    "log_file": str(self.tmp / f"pod-{i}.log")}
            proc = ctx.Process(target=pod_main, args=(child, spec), daemon=True,
                               name=f"soak-pod-{i}")
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        for i, conn in enumerate(self.conns):
            if not conn.poll(90):
                raise RuntimeError(f"pod {i} did not start")
            msg = conn.recv()
            if msg[0] != "ready":
                raise RuntimeError(f"pod {i}: {msg}")
            threading.Thread(target=self._receive, args=(i, conn), daemon=True).start()

    def start_daemon(self) -> None:
        log = (self.tmp / f"daemon-{len(self.daemons)}.log").open("wb")
        env = dict(os.environ)
        env.pop("HOTRELOAD_CONFIG", None)
        self.daemons.append(subprocess.Popen(
            [sys.executable, "-m", "hotreload", "--log-format", "json", "-c",
             str(self.config_path), "daemon"], stdout=subprocess.DEVNULL, stderr=log, env=env))

    def _receive(self, index: int, conn: Any) -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "batch":
                self.samples.extend(msg[1])
                self.reads.extend(msg[2])
                for _pod, _t, ns, epoch, version, _c in msg[1]:
                    self.latest[(index, ns)] = (epoch, version)
            elif msg[0] == "done":
                self.done_stats[index] = msg[1]
                return

    def _write_file(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.file_doc))
        os.replace(tmp, self.file)

    # ------------------------------------------------------------------ traffic

    async def direct(self) -> None:
        from hotreload import AsyncPublisher, BackendError, RecoveryNeeded

        rng = self.traffic_rng
        truth: dict[str, Any] = {}
        async with AsyncPublisher(self.config, namespace=DIRECT, source="soak") as pub:
            while not self.stopping:
                sets: dict[str, Any] = {}
                for _ in range(rng.randint(1, 3)):
                    name = f"d{rng.randrange(40)}"
                    sets[name] = ({"x": rng.randrange(1000), "y": [rng.random()]}
                                  if rng.random() < 0.05 else rng.randrange(10**6))
                deletes = [f"d{rng.randrange(40)}"] if rng.random() < 0.1 else []
                deletes = [d for d in deletes if d not in sets]
                try:
                    await pub.publish(sets, deletes)
                    for d in deletes:
                        truth.pop(d, None)
                    truth.update(sets)
                except RecoveryNeeded:
                    self.notes["direct recoveries"] += 1
                    try:
                        await pub.replace(truth)
                    except BackendError:
                        await asyncio.sleep(0.1)
                except BackendError:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.002 if not self.short else 0.01)

    async def files(self) -> None:
        rng = self.traffic_rng
        n = 0
        while not self.stopping:
            n += 1
            self.file_doc[f"f{rng.randrange(20)}"] = n
            self._write_file()
            await asyncio.sleep(0.25)

    async def table(self) -> None:
        if self.pg is None:
            return
        import psycopg

        rng = self.traffic_rng
        n = 0
        conn: Any = None
        while not self.stopping:
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(self.pg.url, autocommit=True,
                                                                 connect_timeout=2)
                n += 1
                await conn.execute(
                    "INSERT INTO hotreload_settings (namespace, key, value) VALUES "
                    "(%s, %s, %s) ON CONFLICT (namespace, key) DO UPDATE SET "
                    "value = excluded.value", (PG_NS, f"p{rng.randrange(20)}", str(n)))
                if n % 5 == 0:
                    await conn.execute("SELECT pg_notify('soak_inv', %s)",
                                       (json.dumps({"keys": [f"x{n}"]}),))
            except psycopg.Error:
                if conn is not None:
                    await conn.close()
                conn = None
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.1)
        if conn is not None:
            await conn.close()

    async def rows_writer(self) -> None:
        """Writes rows (the pods' database) and invalidates them, as an application does."""
        from hotreload import AsyncSubscriber, AsyncTwoLevelCache, BackendError

        rng = self.traffic_rng
        counters = dict.fromkeys(ROW_KEYS, 0)
        sub: AsyncSubscriber[Any] = AsyncSubscriber(self.config, namespace=DIRECT)
        await sub.start(timeout=30)
        cache = AsyncTwoLevelCache(sub, name="rows")
        try:
            while not self.stopping:
                name = rng.choice(ROW_KEYS)
                counters[name] += 1
                tmp = self.rows / f".{name}.tmp"
                tmp.write_text(str(counters[name]))
                os.replace(tmp, self.rows / name)
                while not self.stopping:
                    try:
                        await cache.invalidate(name)
                        self.writes[name].append((counters[name], time.time()))
                        break
                    except BackendError:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.01 if not self.short else 0.03)
        finally:
            await cache.aclose()
            await sub.aclose()

    # ------------------------------------------------------------------ the checker's reads

    async def poll_logs(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis.url, socket_timeout=2,
                                         socket_connect_timeout=1)
        tracked: dict[str, tuple[str | None, int]] = {}
        inv: dict[str, tuple[str | None, int]] = {}
        try:
            while True:
                try:
                    for ns in (DIRECT, FILE_NS, PG_NS):
                        await self._poll_one(client, ns, tracked)
                        base = f"{PREFIX}:{{{ns}}}"
                        epoch, seq = await client.hmget(f"{base}:inv", ["epoch", "seq"])
                        seq_n = int(seq or 0)
                        old = inv.get(ns, (None, 0))
                        if epoch == old[0]:
                            self.invalidations += max(0, seq_n - old[1])
                        else:
                            self.invalidations += seq_n
                        inv[ns] = (epoch, seq_n)
                except (OSError, aioredis.RedisError, ValueError):
                    await asyncio.sleep(0.05)
                if self.stopping and self.final_polled:
                    return
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    final_polled = False

    async def listen(self) -> None:
        """The checker also hears every config event as it is published (raw redis-py), so
        a commit that a Redis restart erases before the log is read is still known."""
        import redis.asyncio as aioredis

        channels = {f"{PREFIX}:{{{ns}}}:config".encode(): ns for ns in (DIRECT, FILE_NS, PG_NS)}
        while True:
            client = aioredis.Redis.from_url(self.redis.url, socket_connect_timeout=1)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    ns = channels.get(msg["channel"])
                    event = _event(msg["data"])
                    if ns is not None and event is not None and "epoch" in event:
                        self.history.add(Commit(ns, event["epoch"], int(event["version"]),
                                                event["checksum"], float(event["ts"])))
            except (OSError, aioredis.RedisError, ValueError, KeyError):
                await asyncio.sleep(0.05)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()

    async def _poll_one(self, client: Any, ns: str,
                        tracked: dict[str, tuple[str | None, int]]) -> None:
        base = f"{PREFIX}:{{{ns}}}"
        epoch_b, version_b = await client.hmget(f"{base}:meta", ["epoch", "version"])
        if epoch_b is None:
            return
        epoch = epoch_b.decode()
        have = tracked.get(ns, (None, 0))
        start = have[1] + 1 if have[0] == epoch else 1
        entries = await client.xrange(f"{base}:changes", str(start), "+", count=20_000)
        last = have[1] if have[0] == epoch else 0
        for _id, fields in entries:
            event = _event(fields.get(b"e", b""))
            if event is None or event.get("epoch") != epoch:
                continue
            self.history.add(Commit(ns, epoch, int(event["version"]), event["checksum"],
                                    float(event["ts"])))
            last = max(last, int(event["version"]))
        if entries or have[0] != epoch:
            tracked[ns] = (epoch, last)
        if version_b is not None and int(version_b) > last + 20_000:
            self.notes["log gaps"] += 1

    # ------------------------------------------------------------------ faults

    def kinds(self) -> list[str]:
        kinds = list(KINDS)
        if self.pg is None:
            kinds.remove("pg-restart")
        return kinds

    def schedule(self) -> list[str]:
        kinds = self.kinds()
        plan = [k for k in kinds for _ in range(2)] if self.short else []
        self.rng.shuffle(plan)
        return plan

    async def fault_loop(self) -> None:
        plan = self.schedule()
        while not self.stopping:
            await asyncio.sleep(self.rng.uniform(0.5, 2.0) if self.short
                                else self.rng.uniform(1.0, 4.0))
            if self.stopping:
                return
            kind = plan.pop() if plan else self.rng.choice(self.kinds())
            began = time.time()
            await getattr(self, "fault_" + kind.replace("-", "_"))()
            self.faults[kind] += 1
            self.timeline.append((began, time.time(), kind, self.last_detail))

    def _window(self, pods: list[int], start: float, end: float) -> None:
        for i in pods:
            self.windows[i].append((start, end + WINDOW))

    def _duration(self) -> float:
        return self.rng.uniform(0.5, 3.0) if self.short else self.rng.uniform(1.0, 6.0)

    async def fault_kill(self) -> None:
        import redis.asyncio as aioredis

        pod = self.rng.randrange(self.pods_n)
        self.last_detail = f"pod {pod}"
        start = time.time()
        client = aioredis.Redis.from_url(self.redis.url)
        try:
            for info in await client.client_list():
                if info.get("name") == f"soak-pod-{pod}":
                    await client.client_kill_filter(_id=info["id"])
        except (OSError, aioredis.RedisError):
            pass
        finally:
            await client.aclose()
        self._window([pod], start, time.time())

    async def fault_freeze(self) -> None:
        await self._link_fault("freeze")

    async def fault_blackhole(self) -> None:
        await self._link_fault("blackhole")

    async def _link_fault(self, how: str) -> None:
        pod = self.rng.randrange(self.pods_n)
        self.last_detail = f"pod {pod}"
        start = time.time()
        getattr(self.proxies[pod], how)()
        try:
            await asyncio.sleep(self._duration())
        finally:
            self.proxies[pod].restore()
            self._window([pod], start, time.time())

    async def fault_redis_restart(self) -> None:
        graceful = self.rng.random() < 0.5
        appendonly = self.rng.random() < 0.5
        was = self.redis.appendonly
        start = time.time()
        await asyncio.to_thread(self.redis.stop, graceful)
        await asyncio.sleep(self.rng.uniform(0.2, 1.5))
        await asyncio.to_thread(self.redis.start, appendonly and was)
        self.redis.appendonly = appendonly
        if not (appendonly and was):
            await asyncio.to_thread(self._set_appendonly, appendonly)
        kept = await asyncio.to_thread(self._has_data)
        self.notes[f"redis restarts: {'kept' if kept else 'lost'} data"] += 1
        self.last_detail = (f"{'shutdown' if graceful else 'SIGKILL'}, appendonly "
                            f"{'yes' if was else 'no'} -> {'yes' if appendonly else 'no'}, "
                            f"data {'kept' if kept else 'lost'}")
        self._window(list(range(self.pods_n)), start, time.time())

    def _set_appendonly(self, on: bool) -> None:
        client = self.redis.client()
        try:
            client.config_set("appendonly", "yes" if on else "no")
        finally:
            client.close()

    def _has_data(self) -> bool:
        client = self.redis.client()
        try:
            return bool(client.exists(f"{PREFIX}:{{{DIRECT}}}:meta"))
        finally:
            client.close()

    async def fault_pg_restart(self) -> None:
        if self.pg is None:
            return
        mode = self.rng.choice(["fast", "immediate"])
        await asyncio.to_thread(self.pg.stop, mode)
        await asyncio.sleep(self.rng.uniform(0.3, 2.0))
        await asyncio.to_thread(self.pg.start)

    async def fault_leader_kill(self) -> None:
        from hotreload.daemon.status import read_daemon_status

        victim = None
        try:
            docs = await read_daemon_status(self.config)
            leaders = {d.get("pid") for d in docs if d.get("role") == "leader"}
            victim = next((p for p in self.daemons if p.poll() is None and p.pid in leaders),
                          None)
        except Exception:  # Redis may be restarting: kill any daemon
            victim = None
        if victim is None:
            alive = [p for p in self.daemons if p.poll() is None]
            victim = self.rng.choice(alive) if alive else None
        if victim is not None:
            victim.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.wait, 10)
        await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        self.start_daemon()

    # ------------------------------------------------------------------ run

    def events(self) -> int:
        return self.history.count() + self.invalidations

    async def run(self) -> float:
        began = time.monotonic()
        duration = self.args.duration or (50.0 if self.short else None)
        tasks = [asyncio.create_task(c) for c in (
            self.direct(), self.files(), self.table(), self.rows_writer(), self.fault_loop())]
        next_report = 30.0
        poller = asyncio.create_task(self.poll_logs())
        listener = asyncio.create_task(self.listen())
        try:
            while True:
                await asyncio.sleep(0.5)
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                elapsed = time.monotonic() - began
                if duration is not None and elapsed >= duration:
                    break
                if duration is None and self.events() >= self.args.events:
                    break
                if elapsed >= next_report:
                    next_report += 30
                    _progress(f"{elapsed:.0f}s: {self.events()} events, "
                              f"{sum(self.faults.values())} faults")
        finally:
            self.stopping = True
            await asyncio.gather(*tasks, return_exceptions=True)
        traffic = time.monotonic() - began
        for proxy in self.proxies:
            proxy.restore()
        try:
            await self.converge()
        except Exception as exc:  # reported, with the rest of the figures
            self.not_converged = [(-1, f"{type(exc).__name__}: {exc}")]
        self.final_polled = True
        await poller
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        return traffic

    async def converge(self) -> None:
        """Everything healed: the daemons publish their sources, every pod reaches every
        namespace's head (a violation if not within a minute)."""
        from hotreload import AsyncPublisher

        deadline = time.monotonic() + 60
        async with AsyncPublisher(self.config) as pub:
            while True:
                file_ok = (await pub.snapshot(FILE_NS)).settings == self.file_doc
                if file_ok or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            if not file_ok:
                self.notes["file namespace not converged"] += 1
            heads = {}
            for ns in (DIRECT, FILE_NS) + ((PG_NS,) if self.pg is not None else ()):
                snap = await pub.snapshot(ns)
                heads[ns] = (snap.epoch, snap.version)
        await asyncio.sleep(1.0)  # the poller reads the last commits
        while True:
            behind = [(i, ns) for i in range(self.pods_n) for ns, head in heads.items()
                      if self.latest.get((i, ns), (None, 0))[0] != head[0]
                      or self.latest.get((i, ns), (None, 0))[1] < head[1]]
            if not behind or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        self.not_converged = behind

    def stop(self) -> None:
        for conn in self.conns:
            try:
                conn.send("stop")
            except OSError:
                pass
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        for proxy in self.proxies:
            proxy.close()
        for d in self.daemons:
            if d.poll() is None:
                d.terminate()
                try:
                    d.wait(10)
                except subprocess.TimeoutExpired:
                    d.kill()
        self.redis.close()
        if self.pg is not None:
            self.pg.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _event(data: bytes) -> dict[str, Any] | None:
    text = data.decode("utf-8", "replace")
    if text.endswith('"}') and ',"sig":"' in text:
        text = text[:text.rindex(',"sig":"')] + "}"
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and event.get("kind") != "invalidate" else None


def _levels(stats: dict[int, Any]) -> str:
    hits: Counter[str] = Counter()
    for pod in stats.values():
        for level, n in pod.get("cache", {}).get("hits", {}).items():
            hits[level] += n
    total = sum(hits.values()) or 1
    return ", ".join(f"{level.upper()} {n} ({100 * n / total:.0f}%)"
                     for level, n in sorted(hits.items()))


def _progress(text: str) -> None:
    print(f"soak: {text}", file=sys.stderr, flush=True)


def render(soak: Soak, report: Report, traffic: float, total: float) -> str:
    per_ns = Counter(c.ns for c in soak.history.by_id.values())
    faults = ", ".join(f"{k}: {soak.faults[k]}" for k in soak.kinds())
    notes = ", ".join(f"{k}: {v}" for k, v in sorted(soak.notes.items())) or "-"
    rows = [
        ("mode", f"{'short' if soak.short else 'long'}, seed {soak.seed}, {soak.pods_n} pods, "
                 f"PostgreSQL {'on' if soak.pg is not None else 'off'}"),
        ("time", f"{traffic:.0f} s of traffic, {total:.0f} s in all"),
        ("events", f"{soak.events()} ({soak.history.count()} config versions: "
                   + ", ".join(f"{ns} {n}" for ns, n in sorted(per_ns.items()))
                   + f"; {soak.invalidations} invalidations)"),
        ("faults", f"{sum(soak.faults.values())} ({faults})"),
        ("notes", notes),
        ("checked", f"{report.samples} settings samples ({report.unverified} of a version "
                    f"the checker never saw committed; {report.judged} outside fault windows), "
                    f"{report.reads} cache reads ({report.reads_judged} outside windows)"),
        ("cache levels", _levels(soak.done_stats)),
        ("bound", f"stale: behind a commit older than {BOUND:.2f} s, outside fault windows "
                  f"(a window: the fault plus {WINDOW:.2f} s)"),
        ("max lag outside windows", f"settings {report.max_lag:.3f} s, cache "
                                    f"{report.max_read_lag:.3f} s"),
        ("stale reads", str(len(report.stale))),
        ("stale cache reads", str(len(report.stale_reads))),
        ("version regressions", str(len(report.regressions))),
        ("half-applied states", str(len(report.half_applied))),
        ("not converged at the end", str(len(soak.not_converged))),
    ]
    lines = ["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    for name, items in (("stale", report.stale), ("stale cache", report.stale_reads),
                        ("regression", report.regressions),
                        ("half-applied", report.half_applied)):
        for item in items[:10]:
            lines.append(f"{name}: {item}")
    for item in soak.not_converged[:10]:
        lines.append(f"not converged: pod {item[0]} {item[1]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    soak = Soak(args)
    logging.basicConfig(filename=soak.tmp / "controller.log", level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _progress(f"starting (seed {args.seed}, {'short' if args.short else 'long'}) in "
                  f"{soak.tmp}")
        soak.start()
        _progress("running")
        traffic = asyncio.run(soak.run())
    finally:
        soak.stop()
    report = check(soak.history, soak.samples, soak.reads, dict(soak.writes),
                   dict(soak.windows), BOUND)
    text = render(soak, report, traffic, time.monotonic() - began)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seed": args.seed, "short": args.short, "events": soak.events(),
            "faults": dict(soak.faults), "notes": dict(soak.notes),
            "violations": report.violations + len(soak.not_converged),
            "max_lag": report.max_lag, "max_read_lag": report.max_read_lag}, indent=2))
    failed = report.violations + len(soak.not_converged)
    if failed or args.keep:
        (soak.tmp / "debug.json").write_text(json.dumps({
            "timeline": soak.timeline, "samples": soak.samples, "reads": soak.reads,
            "commits": [c.__dict__ if hasattr(c, "__dict__") else
                        [c.ns, c.epoch, c.version, c.checksum, c.ts]
                        for c in soak.history.by_id.values()],
            "windows": soak.windows}))
        print(f"logs, data and debug.json kept in {soak.tmp}", file=sys.stderr)
    else:
        soak.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
