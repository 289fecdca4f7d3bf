"""A plain synchronous worker whose behaviour follows its settings: `Subscriber.on_change`.

The worker drains a stream of items in batches. Its settings (namespace ``worker``) say how big
a batch is and whether it is paused; listeners registered with ``on_change(keys=...)`` resize the
batch and pause or resume the loop the moment a change is published, with no restart:

    python examples/workers/sync_worker.py            # needs Redis on 127.0.0.1:6379
    hotreload publish -n worker worker.batch_size=50  # in another shell
    hotreload publish -n worker worker.paused=true

REDIS_URL overrides the address; ``--max-changes N`` stops after N changes (the test uses it).
Listeners run on the subscriber's background thread: keep them short, hand work to your own.
"""

from __future__ import annotations

import argparse
import os
import threading

import pydantic

from hotreload import HotReloadConfig, SettingsChange, Subscriber

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class Worker(pydantic.BaseModel):
    batch_size: int = pydantic.Field(10, ge=1, le=1000)
    paused: bool = False


class Settings(pydantic.BaseModel):
    worker: Worker = Worker()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-changes", type=int, default=None)
    args = parser.parse_args()
    config = HotReloadConfig.from_url(REDIS_URL, namespace=os.environ.get("APP_NAMESPACE",
                                                                          "worker"))
    changes = 0
    done = threading.Event()
    running = threading.Event()

    with Subscriber(config, model=Settings) as sub:
        @sub.on_change(keys=["worker.batch_size"])
        def resize(change: SettingsChange) -> None:
            old, new = change.old_settings.worker, change.new_settings.worker
            print(f"v{change.version}: batch size {old.batch_size} -> {new.batch_size}",
                  flush=True)

        @sub.on_change(keys=["worker.paused"])
        def pause_or_resume(change: SettingsChange) -> None:
            paused = change.new_settings.worker.paused
            (running.clear if paused else running.set)()
            print(f"v{change.version}: {'paused' if paused else 'resumed'}", flush=True)

        @sub.on_change
        def count(change: SettingsChange) -> None:
            nonlocal changes
            changes += 1
            if args.max_changes is not None and changes >= args.max_changes:
                done.set()

        if not sub.settings.worker.paused:
            running.set()
        print(f"ready at v{sub.version}: batch size {sub.settings.worker.batch_size}",
              flush=True)
        processed = 0
        while not done.is_set():
            if not running.wait(timeout=0.1):  # paused: wait to be resumed (or stopped)
                continue
            batch = sub.settings.worker.batch_size  # read per batch: always the current value
            processed += batch  # ... the real work on `batch` items goes here
            done.wait(timeout=0.05)
    print(f"stopped after {changes} change(s)", flush=True)


if __name__ == "__main__":
    main()
