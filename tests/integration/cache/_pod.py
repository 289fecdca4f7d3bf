"""A "pod" for the cross-process tests: a sync TwoLevelCache driven over stdin/stdout.

Usage: python _pod.py REDIS_URL NAMESPACE DB_JSON_PATH. The loader reads rows from the JSON
file (the pod's "database"). Commands, one per line: ``get KEY``, ``invalidate KEY``, ``stats``,
``quit``; each answer is one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from hotreload import HotReloadConfig, Subscriber
from hotreload.cache import TwoLevelCache


def main() -> None:
    url, namespace, db = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    loads = 0

    def loader(key: str) -> Any:
        nonlocal loads
        loads += 1
        return json.loads(db.read_text()).get(key)

    sub: Subscriber[Any] = Subscriber(HotReloadConfig.from_url(url, namespace=namespace))
    sub.start()
    cache = TwoLevelCache(sub, name="c")
    deadline = time.monotonic() + 10
    while not cache.trusted and time.monotonic() < deadline:
        time.sleep(0.005)
    print(json.dumps({"ready": cache.trusted}), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "get":
            out: Any = {"value": cache.get(arg, loader), "loads": loads}
        elif cmd == "invalidate":
            cache.invalidate(arg)
            out = {"ok": True}
        elif cmd == "stats":
            out = {**cache.stats(), "loads_seen": loads}
        else:
            break
        print(json.dumps(out), flush=True)
    cache.close()
    sub.close()


if __name__ == "__main__":
    main()
