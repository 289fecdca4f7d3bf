"""Run a daemon whose only source is the test-only polling source, with JSON logs on stderr.

Usage: python _runner.py CONFIG FILE NAMESPACE
"""

from __future__ import annotations

import asyncio
import sys

from _polling_source import PollingJsonSource

from hotreload.config import load_config
from hotreload.daemon.core import Daemon
from hotreload.logs import configure_logging


def main() -> None:
    config_path, file, namespace = sys.argv[1:4]
    configure_logging(verbose=True, fmt="json")
    config = load_config(config_path)
    source = PollingJsonSource(file, namespace)
    asyncio.run(Daemon(config, sources=[source], handle_signals=True).run())


if __name__ == "__main__":
    main()
