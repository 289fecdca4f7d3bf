"""The PostgreSQL example end to end: settings rows and row-change invalidations, through the
daemon, reaching a subscriber and its two-level cache.

    python examples/postgres/run.py     # needs Redis and PostgreSQL on 127.0.0.1, hotreload[daemon]

It installs the settings table (``hotreload db install``), applies ``schema.sql`` (the products
table and its invalidation trigger, the shop's settings rows), starts ``hotreload daemon`` with
``config.yaml``, then plays an application and an admin:

1. the app follows namespace ``shop`` with a typed model and reads product 1 through a cache;
2. ``UPDATE hotreload_settings ... pricing.multiplier`` reaches the app as a new version;
3. ``UPDATE products ...`` fires the trigger's NOTIFY, the daemon publishes an invalidation,
   and the app's next read loads the new price.

REDIS_URL and DATABASE_URL override the addresses (use a database of its own: the example creates
tables in it); HOTRELOAD_* variables apply as everywhere (e.g. HOTRELOAD_PREFIX). Exit code 0
when every step was seen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pydantic
import yaml

from hotreload import Invalidation, SettingsChange, Subscriber, TwoLevelCache, load_config

HERE = Path(__file__).resolve().parent
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
WAIT = 20.0  # seconds any step may take before the example gives up


class Pricing(pydantic.BaseModel):
    multiplier: float = 1.0


class Features(pydantic.BaseModel):
    search: bool = False


class Shop(pydantic.BaseModel):
    pricing: Pricing = Pricing()
    features: Features = Features()


def hotreload(*args: str, config: Path) -> list[str]:
    return [sys.executable, "-m", "hotreload", "-c", str(config), *args]


def wait(event: threading.Event, what: str) -> None:
    if not event.wait(WAIT):
        raise SystemExit(f"error: no {what} within {WAIT:.0f}s")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = yaml.safe_load((HERE / "config.yaml").read_text())
        config["redis"]["url"] = REDIS_URL
        config["postgres"]["dsn"] = DATABASE_URL
        config_path = Path(tmp) / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))

        subprocess.run(hotreload("db", "install", config=config_path), check=True)
        with psycopg.connect(DATABASE_URL, autocommit=True) as db:
            db.execute((HERE / "schema.sql").read_text())
        print("schema installed: products, its trigger, the shop's settings rows")

        daemon = subprocess.Popen(hotreload("daemon", "--http", "off", config=config_path))
        try:
            run_app_and_admin(config_path)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
    print("ok")


def run_app_and_admin(config_path: Path) -> None:
    published, repriced, invalidated = threading.Event(), threading.Event(), threading.Event()
    with Subscriber(load_config(config_path), namespace="shop", model=Shop) as sub, \
            psycopg.connect(DATABASE_URL, autocommit=True) as db, \
            TwoLevelCache(sub, name="products") as cache:

        @sub.on_change
        def changed(change: SettingsChange) -> None:
            print(f"v{change.version}: multiplier {change.new_settings.pricing.multiplier}")
            published.set()
            if change.new_settings.pricing.multiplier == 1.25:
                repriced.set()

        @sub.on_invalidate(keys=["product:1"])  # also called for "invalidate everything"
        def dropped(event: Invalidation) -> None:
            if "product:1" in event.keys:  # (the daemon sends one when it starts listening)
                print(f"invalidated {', '.join(event.keys)}")
                invalidated.set()

        if sub.version == 0:  # the daemon publishes the settings rows when it starts
            wait(published, "settings from the daemon")

        def load_product(key: str) -> dict[str, Any] | None:  # L3: only on a miss
            row = db.execute("SELECT name, price FROM products WHERE id = %s",
                             (int(key.removeprefix("product:")),)).fetchone()
            return None if row is None else {"name": row[0], "price": str(row[1])}

        def price(key: str) -> Decimal:
            product = cache.get(key, load_product)
            return Decimal(product["price"]) * Decimal(str(sub.settings.pricing.multiplier))

        print(f"product:1 costs {price('product:1'):.2f}")

        db.execute("UPDATE hotreload_settings SET value = '1.25' "
                   "WHERE namespace = 'shop' AND key = 'pricing.multiplier'")
        wait(repriced, "new multiplier")
        print(f"product:1 costs {price('product:1'):.2f} after the settings change")

        db.execute("UPDATE products SET price = 22.00 WHERE id = 1")
        wait(invalidated, "invalidation of product:1")
        now = price("product:1")
        print(f"product:1 costs {now:.2f} after the row change")
        if now != Decimal("27.50"):
            raise SystemExit(f"error: product:1 costs {now}, not 27.50")


if __name__ == "__main__":
    main()
