"""A FastAPI service with hot-reloaded typed settings and PostgreSQL rows in a two-level cache.

No glue: `HotReload` starts the subscriber and the cache with the app and closes them with it,
``Depends(hr.settings)`` hands each request the current settings, ``Depends(products)`` the
cache, and ``hr.router()`` adds a read-only ``GET /settings``. See README.md to run it.

Configuration comes from the environment as everywhere in hotreload (``HOTRELOAD_REDIS__URL``,
``HOTRELOAD_PREFIX``, a ``config.yaml``...; ``REDIS_URL`` is a shortcut), the database from
``DATABASE_URL``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

import psycopg
import pydantic
from fastapi import Depends, FastAPI, HTTPException, Request

from hotreload import AsyncTwoLevelCache
from hotreload.integrations.fastapi import HotReload

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop")


class Pricing(pydantic.BaseModel):
    multiplier: Decimal = Decimal("1.0")


class Features(pydantic.BaseModel):
    search: bool = False


class Payments(pydantic.BaseModel):
    provider: str = "none"
    api_key: str = ""  # shown as *** by GET /settings


class Settings(pydantic.BaseModel):
    pricing: Pricing = Pricing()
    features: Features = Features()
    payments: Payments = Payments()


hr = HotReload(os.environ.get("REDIS_URL"), namespace=os.environ.get("APP_NAMESPACE", "shop"),
               model=Settings, service="shop-api")
products = hr.cache("products", ttl=60)  # rows keyed product:<id>, invalidated by the trigger


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as db, \
            hr.lifespan(app):
        app.state.db = db
        yield


app = FastAPI(title="shop", lifespan=lifespan)
app.include_router(hr.router())  # GET /settings: version, link state, settings (secrets masked)

SettingsDep = Annotated[Settings, Depends(hr.settings)]
ProductsDep = Annotated[AsyncTwoLevelCache, Depends(products)]


@app.get("/products/{product_id}")
async def get_product(product_id: int, request: Request, settings: SettingsDep,
                      cache: ProductsDep) -> dict[str, Any]:
    db: psycopg.AsyncConnection[Any] = request.app.state.db

    async def load(key: str) -> dict[str, str] | None:  # only on a miss of L1 and Redis
        cur = await db.execute("SELECT name, price FROM products WHERE id = %s", (product_id,))
        row = await cur.fetchone()
        return None if row is None else {"name": row[0], "price": str(row[1])}

    product = await cache.get(f"product:{product_id}", load, cache_none=True)
    if product is None:
        raise HTTPException(404, f"no product {product_id}")
    price = Decimal(product["price"]) * settings.pricing.multiplier
    return {"id": product_id, "name": product["name"], "price": f"{price:.2f}"}


@app.get("/search")
async def search(q: str, request: Request, settings: SettingsDep) -> list[dict[str, Any]]:
    if not settings.features.search:  # a feature flag, switched without a deploy
        raise HTTPException(404, "search is disabled")
    db: psycopg.AsyncConnection[Any] = request.app.state.db
    cur = await db.execute("SELECT id, name FROM products WHERE name ILIKE %s ORDER BY id",
                           (f"%{q}%",))
    return [{"id": row[0], "name": row[1]} for row in await cur.fetchall()]
