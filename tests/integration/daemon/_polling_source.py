"""A test-only source: polls one JSON file and reports it (stands in for the real sources)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hotreload.daemon.sources.base import Sink


class PollingJsonSource:
    """Reports ``path``'s JSON object as the desired state of ``namespace`` when it changes."""

    def __init__(self, path: str | Path, namespace: str, *, interval: float = 0.02) -> None:
        self.path = Path(path)
        self.namespace = namespace
        self.interval = interval
        self.name = f"poll:{self.path.name}"
        self.reconciles = 0

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    async def run(self, sink: Sink) -> None:
        last: bytes | None = b"\0never"
        while True:
            data = self._read()
            if data != last:
                last = data
                await self._report(sink, data)
            await asyncio.sleep(self.interval)

    async def reconcile(self, sink: Sink) -> None:
        self.reconciles += 1
        await self._report(sink, self._read())

    async def _report(self, sink: Sink, data: bytes | None) -> None:
        if data is None:
            sink.rejected(self.name, "missing", f"{self.path}: no such file")
            return
        try:
            doc = json.loads(data)
        except ValueError as exc:
            sink.rejected(self.name, "json", f"{self.path}: {exc}")
            return
        if not isinstance(doc, dict):
            sink.rejected(self.name, "type", f"{self.path}: not a JSON object")
            return
        await sink.desired(self.namespace, doc, source=self.name)
        sink.accepted(self.name)
