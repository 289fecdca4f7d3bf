"""docs/daemon.md stays in sync with the metrics and the daemon settings."""

from __future__ import annotations

import re
from pathlib import Path

from hotreload.config import DaemonSettings
from hotreload.daemon.metrics import Metrics

DOC = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()


def test_every_metric_is_documented() -> None:
    exposed = set()
    for family in Metrics().registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        exposed.add(family.name + suffix)
    documented = set(re.findall(r"^\| `(hotreload_[a-z_]+)` \|", DOC, flags=re.M))
    assert documented == exposed


def test_every_daemon_key_is_documented() -> None:
    for name in DaemonSettings.model_fields:
        assert f"`daemon.{name}`" in DOC, name
