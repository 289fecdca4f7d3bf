"""A Celery/RQ-style worker: settings read once per job, so a job never mixes two versions.

Job workers (Celery, RQ, arq, Dramatiq...) run many jobs in one long-lived process. Start one
`Subscriber` per process (in Celery: on ``worker_process_init``; in RQ: before ``work()``), then
take ``sub.settings`` **once at the start of each job** and pass that object down: settings
objects are immutable and swapped atomically, so the whole job sees one version even if a change
lands while it runs, and the next job sees the change. Here the queue is a plain `queue.Queue`
and the broker is this process; the pattern is the same with any job library.

    python examples/workers/job_worker.py   # needs Redis on 127.0.0.1:6379

It runs jobs, publishes a new discount halfway (as an admin would), and runs more jobs: the jobs
queued after the change bill with the new discount. REDIS_URL overrides the address.
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pydantic

from hotreload import HotReloadConfig, Publisher, SettingsChange, Subscriber

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
WORKERS = 3


class Billing(pydantic.BaseModel):
    discount: Decimal = Decimal("0")
    currency: str = "EUR"


class Settings(pydantic.BaseModel):
    billing: Billing = Billing()


@dataclass(frozen=True)
class Job:
    number: int
    amount: Decimal


def handle(job: Job, settings: Settings) -> str:
    """The job's work, with the settings it was given (never re-read in the middle)."""
    billing = settings.billing
    total = job.amount * (1 - billing.discount)
    return f"job {job.number}: {total:.2f} {billing.currency} (discount {billing.discount})"


def worker(sub: Subscriber[Settings], jobs: queue.Queue[Job | None],
           results: queue.Queue[str]) -> None:
    while (job := jobs.get()) is not None:
        settings = sub.settings  # once per job
        results.put(handle(job, settings))


def main() -> None:
    namespace = os.environ.get("APP_NAMESPACE", f"jobs-{uuid.uuid4().hex[:8]}")
    config = HotReloadConfig.from_url(REDIS_URL, namespace=namespace)
    jobs: queue.Queue[Job | None] = queue.Queue()
    results: queue.Queue[str] = queue.Queue()
    with Subscriber(config, model=Settings) as sub, Publisher(config) as admin:
        @sub.on_change(keys=["billing"])
        def announce(change: SettingsChange) -> None:
            print(f"v{change.version}: discount {change.new_settings.billing.discount}",
                  flush=True)

        admin.publish({"billing.discount": "0", "billing.currency": "EUR"})
        sub.wait_for_version(admin.version())
        threads = [threading.Thread(target=worker, args=(sub, jobs, results))
                   for _ in range(WORKERS)]
        for thread in threads:
            thread.start()
        try:
            run_batch(jobs, results, range(1, 6))
            result = admin.publish({"billing.discount": "0.2"})  # an admin, elsewhere
            sub.wait_for_version(result.version)
            run_batch(jobs, results, range(6, 11))
        finally:
            for _ in threads:
                jobs.put(None)
            for thread in threads:
                thread.join()


def run_batch(jobs: queue.Queue[Job | None], results: queue.Queue[str],
              numbers: range) -> None:
    for n in numbers:
        jobs.put(Job(n, Decimal("100")))
    for line in sorted((results.get(timeout=10) for _ in numbers),
                       key=lambda s: int(s.split()[1].rstrip(":"))):
        print(line, flush=True)


if __name__ == "__main__":
    main()
