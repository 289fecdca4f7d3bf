"""Serving an ASGI app in a real server process (uvicorn) for the integration tests."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class Served:
    """A uvicorn process: its base URL, and the lines it wrote to stderr."""

    def __init__(self, proc: subprocess.Popen[str], port: int, lines: list[str]) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.lines = lines


@contextmanager
def uvicorn(app: str, env: Mapping[str, str], *, cwd: Path = ROOT, app_dir: Path | None = None,
            start_within: float = 20.0) -> Iterator[Served]:
    """Run ``python -m uvicorn APP`` on a free loopback port until the block ends (SIGTERM,
    then it must shut the app down cleanly within 10 s). Fails if it does not serve within
    ``start_within``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0",
         "--log-level", "info", "--no-access-log",
         *(["--app-dir", str(app_dir)] if app_dir is not None else [])],
        cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    lines: list[str] = []
    ports: queue.Queue[int | None] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            match = _RUNNING.search(line)
            if match:
                ports.put(int(match[1]))
        ports.put(None)  # the process closed stderr: it is gone

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + start_within
        try:
            port = ports.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            port = None
        if port is None:
            raise AssertionError("uvicorn did not start:\n" + "\n".join(lines))
        yield Served(proc, port, lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT if os.name == "nt" else signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("uvicorn did not stop within 10 s on SIGTERM") from None
        reader.join(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
    # uvicorn re-raises the signal once the app is shut down (recent versions exit -SIGTERM)
    clean = any("Application shutdown complete" in line for line in lines)
    if code not in (0, -signal.SIGTERM) or not clean:
        raise AssertionError(f"uvicorn exited with {code}:\n" + "\n".join(lines))
