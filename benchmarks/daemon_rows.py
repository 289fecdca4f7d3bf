"""Rows that go through ``hotreload daemon``: PostgreSQL UPDATE → listener latency, file save →
listener latency, and sustained invalidation throughput (batched NOTIFY → subscribers).

Each run gets a throwaway PostgreSQL database (created on the ``--dsn`` server, dropped after)
so the daemon's table, trigger, channels and advisory lock never meet another test's. The
daemon runs as a subprocess (``hotreload -c cfg.yaml daemon``); the baselines are written here:
a psycopg LISTEN → redis-py PUBLISH bridge process, and a raw watchfiles watcher process.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

from ._hosts import Hosts, merge_alls
from ._stats import (
    NOT_AVAILABLE,
    Metric,
    Options,
    Pacer,
    Row,
    fanout_latency,
    fmt_ratio,
    latency_row,
    ratio,
    unique,
    verdict,
)

CLI = "from hotreload.cli import main; main()"
WARMUP = 20
READY_TIMEOUT = 60.0


# --------------------------------------------------------------------------- plumbing


def child_env() -> dict[str, str]:
    """The environment for subprocesses: the same ``hotreload`` and ``benchmarks`` as ours."""
    import hotreload

    roots = [str(Path(hotreload.__file__).resolve().parent.parent),
             str(Path(__file__).resolve().parent.parent)]
    old = os.environ.get("PYTHONPATH")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(roots + ([old] if old else []))
    return env


def hotreload_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], env=child_env(), text=True,
                          capture_output=True, timeout=timeout, check=False)


def daemon_missing() -> str | None:
    """None if ``hotreload daemon`` exists, else why the rows cannot run."""
    try:
        done = hotreload_cli("daemon", "--help")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{NOT_AVAILABLE}: {exc}"
    if done.returncode != 0:
        return NOT_AVAILABLE + " (`hotreload daemon` not found)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def temp_database(dsn: str) -> Iterator[str]:
    """A fresh database on the server of ``dsn``; yields its DSN and drops it afterwards."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"hrbench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))


@contextmanager
def running_daemon(config: dict[str, Any], workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``hotreload -c <workdir>/daemon.yaml daemon`` until the block ends (then SIGTERM)."""
    cfg = workdir / "daemon.yaml"
    cfg.write_text(yaml.safe_dump(config))
    log = open(workdir / "daemon.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-c", CLI, "-c", str(cfg), "daemon"],
                            env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def daemon_config(opts: Options, ns: str, **extra: Any) -> dict[str, Any]:
    return {"redis": {"url": opts.redis_url}, "namespace": ns,
            "daemon": {"http": f"127.0.0.1:{free_port()}"}, **extra}


def postgres_section(dsn: str, channels: list[str]) -> dict[str, Any]:
    return {"dsn": dsn, "channels": channels,
            "leader_lock_key": random.randrange(1, 2**62)}


def install_sql(config: dict[str, Any], workdir: Path) -> None:
    cfg = workdir / "install.yaml"
    cfg.write_text(yaml.safe_dump(config))
    done = hotreload_cli("-c", str(cfg), "db", "install")
    if done.returncode != 0:
        raise RuntimeError(f"`hotreload db install` failed: {done.stderr.strip()[-300:]}")


def wait_published(opts: Options, ns: str, seq: int, proc: subprocess.Popen[bytes],
                   workdir: Path, timeout: float = READY_TIMEOUT) -> None:
    """Wait until the namespace holds ``bench.seq >= seq`` (the daemon is live)."""
    import redis

    from hotreload.wire import keys_for

    client = redis.Redis.from_url(opts.redis_url)
    key = keys_for(ns).leaves  # one field per leaf, its JSON text (docs/protocol.md §4.2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            raw = client.hget(key, "bench.seq")
            if raw:
                got = json.loads(raw)
                if isinstance(got, int) and got >= seq:
                    return
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    finally:
        client.close()
    tail = (workdir / "daemon.log").read_text(errors="replace")[-600:]
    raise RuntimeError(f"daemon did not publish bench.seq={seq} within {timeout}s "
                       f"(exit {proc.poll()}); log tail: {tail}")


# --------------------------------------------------------------------------- the bridge baseline


def bridge_main(dsn: str, pg_channel: str, redis_url: str, redis_channel: str,
                stop: Any, ready: Any) -> None:
    """Baseline bridge: psycopg LISTEN → redis-py PUBLISH (pipelined per drained batch)."""
    import psycopg
    import redis
    from psycopg import sql

    client = redis.Redis.from_url(redis_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(pg_channel)))
        ready.set()
        while not stop.is_set():
            batch = list(conn.notifies(timeout=0.2, stop_after=1))
            if not batch:
                continue
            batch += list(conn.notifies(timeout=0.0))
            pipe = client.pipeline(transaction=False)
            for note in batch:
                pipe.publish(redis_channel, note.payload)
            pipe.execute()
    client.close()


@contextmanager
def running_bridge(dsn: str, pg_channel: str, redis_url: str, redis_channel: str
                   ) -> Iterator[None]:
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=bridge_main, daemon=True,
                       args=(dsn, pg_channel, redis_url, redis_channel, stop, ready))
    proc.start()
    try:
        if not ready.wait(READY_TIMEOUT):
            raise RuntimeError("bridge did not start")
        yield
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()


# --------------------------------------------------------------------------- PG latency


def _bench_table(conn: Any, pg_channel: str) -> None:
    from psycopg import sql

    conn.execute("CREATE TABLE bench_rows (id int PRIMARY KEY, value jsonb NOT NULL)")
    conn.execute(sql.SQL(
        "CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_notify({}, NEW.value::text); RETURN NEW; END $$").format(
            sql.Literal(pg_channel)))
    conn.execute("CREATE TRIGGER bench_notify AFTER INSERT OR UPDATE ON bench_rows "
                 "FOR EACH ROW EXECUTE FUNCTION bench_notify()")
    conn.execute("INSERT INTO bench_rows VALUES (1, '0')")


def _paced_updates(conn: Any, query: str, params: Any, rate: float, n: int
                   ) -> tuple[dict[int, int], float]:
    """Run ``query`` with ``params(seq)`` for seqs WARMUP.. at ``rate``/s; send times."""
    sent: dict[int, int] = {}
    pacer = Pacer(rate)
    for i in range(n):
        pacer.wait(i)
        seq = WARMUP + i
        sent[seq] = time.monotonic_ns()
        conn.execute(query, params(seq))
    return sent, pacer.achieved(n)


def run_pg_latency(opts: Options) -> list[Row]:
    name = "PostgreSQL `UPDATE` → daemon → listener @ 1000/s"
    target = "p99 ≤ 1.5x"
    notes = ("baseline: UPDATE → trigger pg_notify(value) → psycopg LISTEN → redis-py PUBLISH "
             "bridge → raw subscriber; latency per UPDATE until the subscriber saw a value ≥ it "
             "(the daemon may fold bursts)")
    import psycopg

    rate, n = 1000.0, opts.n(2000, 50)
    with ExitStack() as stack:
        dsn = stack.enter_context(temp_database(opts.dsn))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hrbench-")))
        conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))

        # Baseline: UPDATE bench_rows → trigger pg_notify(value) → bridge → raw subscriber.
        pg_channel, rchan = "bench_rows", unique("bench-bridge")
        _bench_table(conn, pg_channel)
        with running_bridge(dsn, pg_channel, opts.redis_url, rchan):
            hosts = Hosts("raw", 1, rchan, opts.redis_url)
            hosts.wait_ready()
            upd = "UPDATE bench_rows SET value = %s::jsonb WHERE id = 1"
            for seq in range(WARMUP):
                conn.execute(upd, (str(seq),))
            time.sleep(0.2)
            sent, achieved = _paced_updates(conn, upd, lambda s: (str(s),), rate, n)
            records, _ = hosts.finish("max", WARMUP + n - 1)
        base = fanout_latency(records, sent, achieved)
        missing = daemon_missing()
        if missing:
            return [Row(name, missing, base.describe(), "", target, "n/a", notes, "pg")]

        # hotreload: UPDATE hotreload_settings → trigger → daemon → Redis → listener.
        ns = unique("bench-pg")
        config = daemon_config(opts, ns, postgres=postgres_section(dsn, []))
        install_sql(config, workdir)
        conn.execute("INSERT INTO hotreload_settings (namespace, key, value) "
                     "VALUES (%s, 'bench.seq', '0')", (ns,))
        proc = stack.enter_context(running_daemon(config, workdir))
        wait_published(opts, ns, 0, proc, workdir)
        hosts = Hosts("hotreload", 1, ns, opts.redis_url)
        hosts.wait_ready()
        upd = ("UPDATE hotreload_settings SET value = %s::jsonb "
               "WHERE namespace = %s AND key = 'bench.seq'")
        for seq in range(1, WARMUP):
            conn.execute(upd, (str(seq), ns))
        wait_published(opts, ns, WARMUP - 1, proc, workdir)
        sent, achieved = _paced_updates(conn, upd, lambda s: (str(s), ns), rate, n)
        records, _ = hosts.finish("max", WARMUP + n - 1)
        hr = fanout_latency(records, sent, achieved)
    return [latency_row(name, hr, base, 1.5, target=target, notes=notes, group="pg")]


# --------------------------------------------------------------------------- throughput


def _notify_batches(conn: Any, channel: str, payloads: list[str], batch: int
                    ) -> dict[int, int]:
    """NOTIFY every payload, ``batch`` per transaction; returns seq → send time."""
    sent: dict[int, int] = {}
    query = "SELECT pg_notify(%s, x) FROM unnest(%s::text[]) AS x"
    for start in range(0, len(payloads), batch):
        chunk = payloads[start:start + batch]
        now = time.monotonic_ns()
        for seq in range(start, start + len(chunk)):
            sent[seq] = now
        conn.execute(query, (channel, chunk))
    return sent


def _throughput(records: list[list[tuple[int, int]]], alls: list[list[int]],
                sent: dict[int, int], total: int) -> tuple[float, int, int]:
    """(events/s until the last one arrived, lost, 'invalidate all' events seen)."""
    merged = merge_alls(records, alls, sent)
    covered: set[int] = set()
    last = 0
    for recs in merged:
        for seq, when in recs:
            if 0 <= seq < total and seq not in covered:
                covered.add(seq)
                last = max(last, when)
    first = min(sent.values()) if sent else 0
    lost = total - len(covered)
    elapsed = (last - first) / 1e9
    rate = len(covered) / elapsed if elapsed > 0 else float("nan")
    return rate, lost, sum(len(a) for a in alls)


def run_throughput(opts: Options) -> list[Row]:
    name = "sustained invalidation throughput: batched NOTIFY → daemon → subscriber"
    target = "≥ 50% of baseline, zero loss"
    import psycopg

    total, batch = opts.n(20_000, 300), 100
    with ExitStack() as stack:
        dsn = stack.enter_context(temp_database(opts.dsn))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hrbench-")))
        conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))

        pg_channel, rchan = "bench_raw", unique("bench-bridge")
        with running_bridge(dsn, pg_channel, opts.redis_url, rchan):
            hosts = Hosts("raw", 1, rchan, opts.redis_url)
            hosts.wait_ready()
            sent = _notify_batches(conn, pg_channel, [str(i) for i in range(total)], batch)
            records, alls = hosts.finish("count", total, timeout=120)
        base_rate, base_lost, _ = _throughput(records, alls, sent, total)
        missing = daemon_missing()
        if missing:
            return [Row(name, missing, f"{base_rate:,.0f} events/s, lost {base_lost}", "",
                        target, "n/a", "", "throughput")]

        ns = unique("bench-inv")
        inv_channel = "bench_invalidate"
        config = daemon_config(opts, ns, postgres=postgres_section(dsn, [inv_channel]))
        install_sql(config, workdir)
        conn.execute("INSERT INTO hotreload_settings (namespace, key, value) "
                     "VALUES (%s, 'bench.seq', '0')", (ns,))
        proc = stack.enter_context(running_daemon(config, workdir))
        wait_published(opts, ns, 0, proc, workdir)
        hosts = Hosts("hotreload", 1, ns, opts.redis_url)
        hosts.wait_ready()
        payloads = [json.dumps({"namespace": ns, "keys": [f"k.{i}"]}) for i in range(total)]
        sent = _notify_batches(conn, inv_channel, payloads, batch)
        records, alls = hosts.finish("count", total, timeout=120)
        hr_rate, hr_lost, hr_alls = _throughput(records, alls, sent, total)
    r = ratio(hr_rate, base_rate)
    notes = (f"{total:,} NOTIFYs, {batch} per transaction, sent as fast as possible; "
             "baseline bridge drains the LISTEN connection and pipelines PUBLISHes")
    if hr_alls:
        notes += f"; {hr_alls} 'invalidate everything' events counted as covering earlier keys"
    metric = Metric(r, {"rate": hr_rate, "lost": hr_lost},
                    {"rate": base_rate, "lost": base_lost},
                    "{rate} events/s, lost {lost}", "{rate} events/s, lost {lost}",
                    "{ratio} of baseline", fmt=lambda v: f"{v:,.0f}",
                    judge=lambda value, _: value >= 0.5,
                    failed=f"LOST {hr_lost}" if hr_lost else "")
    return [Row(name, f"{hr_rate:,.0f} events/s, lost {hr_lost}",
                f"{base_rate:,.0f} events/s, lost {base_lost}", fmt_ratio(r) + " of baseline",
                target, verdict(r >= 0.5 and hr_lost == 0), notes, "throughput", metric)]


# --------------------------------------------------------------------------- file saves

_SEQ = re.compile(rb"seq:\s*(\d+)")


def _save(path: Path, seq: int) -> None:
    """An editor-style atomic save: write a temp file, then rename it over the target."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(f"bench:\n  seq: {seq}\n".encode())
    os.replace(tmp, path)


def watch_main(directory: str, filename: str, stop: Any, ready: Any, conn: Connection) -> None:
    """Baseline: raw watchfiles on the directory; each wake-up reads the file's seq."""
    import watchfiles

    records: list[tuple[int, int]] = []
    target = os.path.join(directory, filename)
    first = True
    for _changes in watchfiles.watch(directory, watch_filter=None, step=1, debounce=50,
                                     rust_timeout=100, yield_on_timeout=True, stop_event=stop,
                                     recursive=False):
        now = time.monotonic_ns()
        if first:
            ready.set()
            first = False
        if not _changes:
            continue
        try:
            with open(target, "rb") as fh:
                m = _SEQ.search(fh.read())
        except FileNotFoundError:
            continue
        if m:
            records.append((int(m.group(1)), now))
    conn.send(records)


def _paced_saves(path: Path, rate: float, n: int) -> tuple[dict[int, int], float]:
    sent: dict[int, int] = {}
    pacer = Pacer(rate)
    for i in range(n):
        pacer.wait(i)
        seq = WARMUP + i
        sent[seq] = time.monotonic_ns()
        _save(path, seq)
    return sent, pacer.achieved(n)


def run_file(opts: Options) -> list[Row]:
    name = "file saved (atomic rename) → daemon → listener"
    target = "p99 < 20 ms"
    rate, n = (50.0, 1000) if not opts.quick else (20.0, 20)

    # Baseline first: it needs no daemon.
    with tempfile.TemporaryDirectory(prefix="hrbench-") as tmp:
        path = Path(tmp) / "settings.yaml"
        _save(path, 0)
        ctx = mp.get_context("spawn")
        stop, ready = ctx.Event(), ctx.Event()
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=watch_main, args=(tmp, path.name, stop, ready, child),
                           daemon=True)
        proc.start()
        try:
            if not ready.wait(READY_TIMEOUT):
                raise RuntimeError("watchfiles baseline did not start")
            for seq in range(1, WARMUP):
                _save(path, seq)
                time.sleep(1 / rate)
            sent, achieved = _paced_saves(path, rate, n)
            time.sleep(0.5)
        finally:
            stop.set()
        if not parent.poll(30):
            raise RuntimeError("watchfiles baseline did not report")
        records = parent.recv()
        proc.join(10)
    base = fanout_latency([records], sent, achieved)

    missing = daemon_missing()
    if missing:
        return [Row(name, missing, base.describe(), "", target, "n/a",
                    "baseline: raw watchfiles wake-up (step=1 ms, debounce=50 ms) + read", "file")]
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hrbench-")))
        confdir = workdir / "conf"
        confdir.mkdir()
        path = confdir / "settings.yaml"
        _save(path, 0)
        ns = unique("bench-file")
        config = daemon_config(opts, ns, sources={"files": [{"path": str(path),
                                                              "namespace": ns}]})
        dproc = stack.enter_context(running_daemon(config, workdir))
        wait_published(opts, ns, 0, dproc, workdir)
        hosts = Hosts("hotreload", 1, ns, opts.redis_url)
        hosts.wait_ready()
        for seq in range(1, WARMUP):
            _save(path, seq)
            time.sleep(1 / rate)
        wait_published(opts, ns, WARMUP - 1, dproc, workdir)
        sent, achieved = _paced_saves(path, rate, n)
        records, _ = hosts.finish("max", WARMUP + n - 1)
    hr = fanout_latency(records, sent, achieved)
    row = latency_row(name, hr, base, float("inf"), target=target, abs_limit_ns=20e6,
                      notes="baseline: raw watchfiles wake-up on the directory "
                      "(step=1 ms, debounce=50 ms) + reading the file", group="file")
    return [row]
