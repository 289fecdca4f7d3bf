"""Logging set-up for the CLI and the daemon (the library itself never configures logging)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message [action=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        action = getattr(record, "action", None)
        return f"{line} [action={action}]" if action else line


#: A command's own output says what happened; its logs add only warnings and errors.
COMMAND_LEVEL = logging.WARNING
#: The daemon has no other output: its log is its account of what it does.
DAEMON_LEVEL = logging.INFO


def configure_logging(*, verbose: bool = False, fmt: str = "text",
                      level: int = COMMAND_LEVEL) -> None:
    """Send hotreload's logs at ``level`` and above (DEBUG with ``verbose``) to stderr.

    Called by the CLI only: commands log warnings and errors (`COMMAND_LEVEL`), the daemon
    INFO too (`DAEMON_LEVEL`), ``--verbose`` everything.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("hotreload")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else level)
    root.propagate = False
