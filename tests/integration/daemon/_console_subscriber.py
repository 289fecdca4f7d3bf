"""A subscriber process for the console tests: ``_console_subscriber.py CONFIG NAMESPACE SERVICE
[MAX_LIMIT]``. With MAX_LIMIT, its model rejects settings whose ``limit`` exceeds it (so it
stays behind). Prints ``ready <instance id>`` once started; runs until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import pydantic

from hotreload.config import load_config
from hotreload.subscriber import AsyncSubscriber


def model_for(max_limit: int) -> type[pydantic.BaseModel]:
    class Settings(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        limit: int = pydantic.Field(0, le=max_limit)

    return Settings


async def main(path: str, namespace: str, service: str, max_limit: str | None) -> None:
    model = model_for(int(max_limit)) if max_limit else None
    sub: AsyncSubscriber[Any] = AsyncSubscriber(load_config(path), namespace=namespace,
                                                service=service, model=model)
    await sub.start(timeout=10)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", sub.instance, flush=True)
    await stop.wait()
    await sub.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4], sys.argv[4] if len(sys.argv) > 4 else None))
