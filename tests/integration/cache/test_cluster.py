"""Invalidation is cluster-wide: a pod in another process drops its L1 and reloads from L3."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REDIS_URL, CacheFactory, await_until

pytestmark = pytest.mark.integration

POD = Path(__file__).with_name("_pod.py")
ROOT = Path(__file__).resolve().parents[3]


class Pod:
    """A `_pod.py` subprocess with a line-oriented JSON conversation (and deadlines)."""

    def __init__(self, namespace: str, db: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, str(POD), REDIS_URL, namespace, str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self.read() == {"ready": True}

    def _pump(self) -> None:
        if self.proc.stdout is not None:
            for line in self.proc.stdout:
                self._lines.put(line)

    def read(self, timeout: float = 15.0) -> Any:
        try:
            return json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            pytest.fail(f"pod said nothing for {timeout}s (exit code {self.proc.poll()})")

    def ask(self, command: str) -> Any:
        if self.proc.stdin is None:
            raise RuntimeError("no stdin")
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.write("quit\n")
                    self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def write_rows(db: Path, **rows: Any) -> None:
    db.write_text(json.dumps(rows))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "db.json"
    path.write_text(json.dumps({"k": "v1"}))
    return path


@pytest.fixture
def pod(namespace: str, db: Path) -> Iterator[Pod]:
    p = Pod(namespace, db)
    yield p
    p.close()


async def test_invalidation_crosses_processes(pod: Pod, db: Path,
                                              make_cache: CacheFactory) -> None:
    local_loads = 0

    def loader(key: str) -> Any:
        nonlocal local_loads
        local_loads += 1
        return json.loads(db.read_text()).get(key)

    here = await make_cache()
    assert pod.ask("get k") == {"value": "v1", "loads": 1}
    assert pod.ask("get k") == {"value": "v1", "loads": 1}  # its L1
    assert await here.get("k", loader) == "v1"  # L2, filled by the pod
    assert local_loads == 0

    # We update the row and invalidate: the pod drops L1, finds no L2, reloads from L3 once.
    write_rows(db, k="v2")
    await here.invalidate("k")
    deadline = time.monotonic() + 10
    while (answer := pod.ask("get k"))["value"] != "v2":
        assert answer["value"] == "v1"
        assert time.monotonic() < deadline, "the pod never saw the invalidation"
    assert answer["loads"] == 2
    assert pod.ask("get k") == {"value": "v2", "loads": 2}

    # And the other way round: the pod invalidates, our L1 entry goes.
    assert await here.get("k", loader) == "v2"
    assert "k" in here.l1
    write_rows(db, k="v3")
    assert pod.ask("invalidate k") == {"ok": True}
    await await_until(lambda: "k" not in here.l1, what="our L1 to drop k")
    assert await here.get("k", loader) == "v3"
    stats = pod.ask("stats")
    assert stats["echoes_skipped"] >= 1 or stats["events"] >= 1


def test_two_sync_pods_in_process(sync_pair: Any) -> None:
    rows = {"k": 1}
    loads: list[str] = []

    def loader(key: str) -> Any:
        loads.append(key)
        return rows[key]

    one, two = sync_pair(), sync_pair()
    assert one.get("k", loader) == 1
    assert two.get("k", loader) == 1
    rows["k"] = 2
    two.invalidate("k")
    deadline = time.monotonic() + 10
    while one.get("k", loader) != 2:
        assert time.monotonic() < deadline, "pod one never saw the invalidation"
    assert loads == ["k", "k"]
