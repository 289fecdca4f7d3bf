"""The app the uvicorn test serves: one setting, read per request through the integration.

Configured from the environment by the test: ``REDIS_URL`` and ``APP_NAMESPACE``.
"""

from __future__ import annotations

import os
from typing import Annotated

import pydantic
from fastapi import Depends, FastAPI

from hotreload.config import build_config
from hotreload.integrations.fastapi import HotReload


class Settings(pydantic.BaseModel):
    counter: int = -1


hr = HotReload(
    build_config({"redis": {"url": os.environ["REDIS_URL"]},
                  "subscriber": {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.5}}),
    namespace=os.environ["APP_NAMESPACE"], model=Settings, service="uvicorn-test")
app = FastAPI(lifespan=hr.lifespan)
app.include_router(hr.router())
SettingsDep = Annotated[Settings, Depends(hr.settings)]


@app.get("/counter")
async def counter(settings: SettingsDep) -> dict[str, int]:
    return {"counter": settings.counter}
