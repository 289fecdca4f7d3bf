"""FastAPI and Starlette (any ASGI app with a lifespan): settings and caches with no glue.

```python
hr = HotReload("redis://127.0.0.1:6379/0", namespace="shop", model=Settings)
users = hr.cache("users", ttl=30)                 # an AsyncTwoLevelCache, built at startup
app = FastAPI(lifespan=hr.lifespan)               # starts and closes the subscriber and caches
app.include_router(hr.router())                   # GET /settings: version, link state, settings

@app.get("/price")
async def price(settings: Settings = Depends(hr.settings)) -> dict[str, float]:
    return {"price": 10 * settings.multiplier}
```

`HotReload.lifespan` creates the `AsyncSubscriber` when the app starts (on the server's event
loop), registers the listeners given to `HotReload.on_change` / `on_invalidate`, waits until
valid settings are loaded (`StartTimeout` fails the startup otherwise), builds the declared
caches, and closes everything when the app stops. Use it as the app's lifespan, or enter it in
your own (``async with hr.lifespan(app): ...``). Starlette apps mount `HotReload.settings_route`
instead of `HotReload.router` (which needs FastAPI).

`HotReload.settings` returns the settings object current when the request starts: a request
that reads it once sees one consistent version even if a change lands while it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, cast

try:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError:  # pragma: no cover - exercised in a subprocess by tests/unit
    raise ImportError("hotreload.integrations.fastapi needs the fastapi extra: "
                      "pip install 'hotreload[fastapi]'") from None

from ..cache import AsyncTwoLevelCache
from ..config import HotReloadConfig
from ..errors import HotReloadError
from ..masking import mask_secrets
from ..subscriber import AsyncSubscriber
from ..subscriber.core import ModelT
from ..transport import Transport

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["EXTRA_HINT", "CacheSlot", "HotReload"]

#: The line shown when FastAPI (or Starlette) is not installed.
EXTRA_HINT: Final = ("hotreload.integrations.fastapi needs the fastapi extra: "
                     "pip install 'hotreload[fastapi]'")

_Registration = Callable[[AsyncSubscriber[Any]], None]


class CacheSlot:
    """A cache declared with `HotReload.cache`: built at startup, closed at shutdown.

    Call it (``Depends(slot)``) or read `cache` to get the `AsyncTwoLevelCache`.
    """

    def __init__(self, owner: HotReload[Any], name: str, options: dict[str, Any]) -> None:
        self._owner = owner
        self.name = name
        self.options = options
        self._cache: AsyncTwoLevelCache | None = None

    @property
    def cache(self) -> AsyncTwoLevelCache:
        if self._cache is None:
            raise HotReloadError(f"cache {self.name!r} is not running: the app has not started "
                                 "(pass hr.lifespan to the app)")
        return self._cache

    def __call__(self) -> AsyncTwoLevelCache:
        return self.cache


class HotReload(Generic[ModelT]):
    """One namespace followed for the life of an ASGI app (the arguments of `AsyncSubscriber`,
    plus ``start_timeout`` for the startup)."""

    def __init__(
        self,
        config: HotReloadConfig | str | None = None,
        *,
        namespace: str | None = None,
        model: type[ModelT] | None = None,
        transport: Transport | None = None,
        service: str | None = None,
        instance: str | None = None,
        start_timeout: float | None = 10.0,
    ) -> None:
        self.config = config
        self.namespace = namespace
        self.model = model
        self.transport = transport
        self.service = service
        self.instance = instance
        self.start_timeout = start_timeout
        self._subscriber: AsyncSubscriber[ModelT] | None = None
        self._registrations: list[_Registration] = []
        self._slots: dict[str, CacheSlot] = {}
        self._running = False

    # ------------------------------------------------------------------ declarations

    def on_change(self, func: Callable[..., Any] | None = None, /, *, keys: Sequence[str] = (),
                  prefixes: Sequence[str] = ()) -> Any:
        """`AsyncSubscriber.on_change`, registered on every subscriber this app starts."""
        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self._registrations.append(
                lambda sub: sub.on_change(f, keys=keys, prefixes=prefixes))
            return f
        return register if func is None else register(func)

    def on_invalidate(self, func: Callable[..., Any] | None = None, /, *,
                      keys: Sequence[str] = (), prefixes: Sequence[str] = ()) -> Any:
        """`AsyncSubscriber.on_invalidate`, registered on every subscriber this app starts."""
        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self._registrations.append(
                lambda sub: sub.on_invalidate(f, keys=keys, prefixes=prefixes))
            return f
        return register if func is None else register(func)

    def cache(self, name: str = "default", **options: Any) -> CacheSlot:
        """Declare an `AsyncTwoLevelCache` (its keyword options) built when the app starts."""
        if name in self._slots:
            raise HotReloadError(f"cache {name!r} is declared twice")
        slot = self._slots[name] = CacheSlot(self, name, options)
        return slot

    # ------------------------------------------------------------------ lifespan

    @property
    def subscriber(self) -> AsyncSubscriber[ModelT]:
        """The running subscriber (`HotReloadError` outside the app's lifespan)."""
        if self._subscriber is None:
            raise HotReloadError("hotreload is not running: the app has not started "
                                 "(pass hr.lifespan to the app)")
        return self._subscriber

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Start the subscriber and the caches; close them when the block ends."""
        if self._running:
            raise HotReloadError("this HotReload is already running (one app at a time)")
        self._running = True
        try:
            sub: AsyncSubscriber[ModelT] = AsyncSubscriber(
                self.config, namespace=self.namespace, model=self.model,
                transport=self.transport, service=self.service, instance=self.instance)
            caches: list[AsyncTwoLevelCache] = []
            try:
                for register in self._registrations:
                    register(sub)
                await sub.start(timeout=self.start_timeout)
                for slot in self._slots.values():
                    slot._cache = AsyncTwoLevelCache(sub, name=slot.name, **slot.options)
                    caches.append(slot._cache)
                self._subscriber = sub
                state = getattr(app, "state", None)
                if state is not None:
                    state.hotreload = self
                yield
            finally:
                self._subscriber = None
                for slot in self._slots.values():
                    slot._cache = None
                for cache in reversed(caches):
                    await cache.aclose()
                await sub.aclose()
        finally:
            self._running = False

    # ------------------------------------------------------------------ dependencies

    def settings(self) -> ModelT:
        """The current settings (a ``model`` instance; a read-only mapping without a model).

        A FastAPI dependency: ``settings: Settings = Depends(hr.settings)``."""
        return cast("ModelT", self.subscriber.settings)

    # ------------------------------------------------------------------ the /settings route

    def describe(self, *, show_settings: bool = True) -> dict[str, Any]:
        """What the ``/settings`` route shows (secret-looking values masked)."""
        sub = self.subscriber
        doc: dict[str, Any] = {
            "namespace": sub.namespace,
            "version": sub.version,
            "epoch": sub.epoch,
            "received_version": sub.received_version,
            "link": sub.link_state,
            "last_error": sub.last_error,
            "service": sub.service,
            "instance": sub.instance,
        }
        if show_settings:
            doc["settings"] = mask_secrets(sub.as_dict())
        return doc

    def _endpoint(self, show_settings: bool) -> Callable[[Request], Any]:
        async def hotreload_settings(request: Request) -> JSONResponse:
            if self._subscriber is None:
                return JSONResponse({"error": "hotreload is not running"}, status_code=503)
            return JSONResponse(self.describe(show_settings=show_settings),
                                headers={"Cache-Control": "no-store"})
        return hotreload_settings

    def settings_route(self, path: str = "/settings", *, show_settings: bool = True) -> Route:
        """A read-only Starlette route (GET) showing the namespace, version, epoch, link state,
        last error and (unless ``show_settings=False``) the settings with secrets masked."""
        return Route(path, self._endpoint(show_settings), methods=["GET"],
                     name="hotreload_settings")

    def router(self, path: str = "/settings", *, show_settings: bool = True,
               **router_options: Any) -> APIRouter:
        """`settings_route` as a FastAPI router: ``app.include_router(hr.router())``;
        ``router_options`` go to ``APIRouter`` (``dependencies=[...]`` to protect it)."""
        try:
            from fastapi import APIRouter
        except ImportError:
            raise ImportError(EXTRA_HINT) from None
        router = APIRouter(**router_options)
        router.add_api_route(path, self._endpoint(show_settings), methods=["GET"],
                             name="hotreload_settings", response_class=JSONResponse,
                             response_model=None)
        return router
