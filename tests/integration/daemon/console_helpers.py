"""Helpers of the console tests: subscriber processes, and the settings file they follow."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from daemon_helpers import HERE, ROOT

SUBSCRIBER = HERE / "_console_subscriber.py"

#: Secret values the settings hold: none may ever reach a browser.
SECRETS = ("hunter2-very-secret", "tok-31415926", "s3cr3t-old-value")


def settings_doc(limit: int, *, password: str = SECRETS[0]) -> dict[str, object]:
    return {"limit": limit, "db": {"host": "db.internal", "password": password},
            "api_token": SECRETS[1], "feature": {"enabled": True, "ratio": 0.25}}


def write_settings(path: Path, limit: int, **kw: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(settings_doc(limit, **kw)))
    tmp.replace(path)  # one atomic save, as an editor or a ConfigMap swap does


class SubscriberProcess:
    """One `_console_subscriber.py` process."""

    def __init__(self, proc: subprocess.Popen[bytes], instance: str) -> None:
        self.proc = proc
        self.instance = instance
        self.stopped = False

    def pause(self) -> None:
        """SIGSTOP: the process stops refreshing its presence and applying anything."""
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def close(self) -> None:
        if self.stopped:
            self.proc.send_signal(signal.SIGCONT)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Subscribers:
    """Starts subscriber processes (each in the background, reporting itself by presence)."""

    def __init__(self) -> None:
        self.procs: list[SubscriberProcess] = []

    def start(self, config: Path, namespace: str, service: str, *,
              max_limit: int | None = None, env: dict[str, str] | None = None,
              within: float = 20.0) -> SubscriberProcess:
        args = [sys.executable, str(SUBSCRIBER), str(config), namespace, service]
        if max_limit is not None:
            args.append(str(max_limit))
        full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        full_env.pop("HOTRELOAD_CONFIG", None)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=full_env)
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            chunk = os.read(proc.stdout.fileno(), 1) if left > 0 and sel.select(left) else b""
            if not chunk:
                sel.close()
                SubscriberProcess(proc, "").close()
                raise AssertionError(f"subscriber {service} did not start within {within}s "
                                     f"(exit status {proc.returncode})")
            line += chunk
        sel.close()
        word, _, instance = line.decode().strip().partition(" ")
        assert word == "ready", line
        sub = SubscriberProcess(proc, instance)
        self.procs.append(sub)
        return sub

    def close(self) -> None:
        for sub in self.procs:
            sub.close()


@pytest.fixture
def subscribers() -> Iterator[Subscribers]:
    subs = Subscribers()
    yield subs
    subs.close()
