"""Moving a process's first full garbage collection off the event path.

After start-up (imports, pydantic models, connections) a process holds tens of thousands of new
objects, and CPython's first full collection of them pauses it for ~10-15 ms, typically a few
seconds later: right on the path of the first events. Subscribers and publishers run that
collection once per process while starting, where a pause costs nothing (docs/subscriber.md).
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_done = False


def collect_startup_garbage() -> None:
    """Run one full collection, the first time this is called in a process (if GC is on)."""
    global _done
    if _done:
        return
    with _lock:
        if not _done and gc.isenabled():
            gc.collect()
        _done = True
