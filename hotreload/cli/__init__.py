"""The ``hotreload`` command line: thin commands over the library.

Each command module defines click commands and registers them on `cli` in `_register`.
Errors are one line on stderr and a non-zero exit, never a traceback (unless ``--verbose``);
a reader of stdout that went away ends any command quietly (`_base.RootGroup`).
"""

from __future__ import annotations

from ._base import cli, main

__all__ = ["cli", "main"]
