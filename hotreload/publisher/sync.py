"""`Publisher`: the synchronous facade, an `AsyncPublisher` run on one background thread."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._loop import LoopThread
from ..config import HotReloadConfig
from ..wire import CanaryTarget, Change, Envelope, Keys
from ..wire.presence import PresenceRecord
from .core import AsyncPublisher, PublishResult, RollbackPlan, Snapshot
from .rollout import Rollout
from .salvage import Salvage


class Publisher:
    """The synchronous facade: runs an `AsyncPublisher` on one background thread."""

    def __init__(
        self,
        config: HotReloadConfig | str | None = None,
        *,
        namespace: str | None = None,
        source: str = "api",
        origin: str | None = None,
    ) -> None:
        self._thread = LoopThread(name="hotreload-publisher")
        try:
            self._core: AsyncPublisher = self._thread.run(
                _build_publisher(config, namespace, source, origin))
        except BaseException:
            self._thread.stop()
            raise

    @property
    def core(self) -> AsyncPublisher:
        return self._core

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.running:
            try:
                self._thread.run(self._core.aclose())
            finally:
                self._thread.stop()

    def keys(self, namespace: str | None = None) -> Keys:
        return self._core.keys(namespace)

    def publish(
        self,
        changes: Mapping[str, Any] | None = None,
        delete: Iterable[str] = (),
        *,
        namespace: str | None = None,
        source: str | None = None,
        ack: bool = False,
    ) -> PublishResult:
        return self._thread.run(self._core.publish(changes, delete, namespace=namespace,
                                                   source=source, ack=ack))

    def replace(self, document: Mapping[str, Any], *, namespace: str | None = None,
                source: str | None = None, ack: bool = False) -> PublishResult:
        return self._thread.run(self._core.replace(document, namespace=namespace,
                                                   source=source, ack=ack))

    def plan(self, changes: Mapping[str, Any] | None = None, delete: Iterable[str] = (), *,
             document: Mapping[str, Any] | None = None,
             namespace: str | None = None) -> tuple[Change, ...]:
        return self._thread.run(self._core.plan(changes, delete, document=document,
                                                namespace=namespace))

    def diff(self, from_version: int, to_version: int | None = None, *,
             namespace: str | None = None) -> tuple[Change, ...]:
        return self._thread.run(self._core.diff(from_version, to_version, namespace=namespace))

    def instances(self, namespace: str | None = None, *,
                  service: str | None = None) -> list[PresenceRecord]:
        return self._thread.run(self._core.instances(namespace, service=service))

    def wait_applied(self, version: int, *, namespace: str | None = None,
                     epoch: str | None = None, timeout: float = 10.0,
                     service: str | None = None, poll: float = 0.05) -> Rollout:
        return self._thread.run(self._core.wait_applied(
            version, namespace=namespace, epoch=epoch, timeout=timeout, service=service,
            poll=poll))

    def canary(
        self, changes: Mapping[str, Any] | None = None, delete: Iterable[str] = (), *,
        target: CanaryTarget | str, canary_id: str | None = None,
        namespace: str | None = None, source: str | None = None, ack: bool = False,
    ) -> PublishResult:
        return self._thread.run(self._core.canary(
            changes, delete, target=target, canary_id=canary_id, namespace=namespace,
            source=source, ack=ack))

    def promote(self, *, namespace: str | None = None, source: str | None = None,
                ack: bool = False) -> PublishResult:
        return self._thread.run(self._core.promote(namespace=namespace, source=source, ack=ack))

    def abort(self, *, namespace: str | None = None, source: str | None = None,
              ack: bool = False) -> PublishResult:
        return self._thread.run(self._core.abort(namespace=namespace, source=source, ack=ack))

    def rebuild(self, document: Mapping[str, Any], *, namespace: str | None = None,
                source: str | None = None) -> PublishResult:
        return self._thread.run(self._core.rebuild(document, namespace=namespace,
                                                   source=source))

    def salvage(self, namespace: str | None = None) -> Salvage:
        return self._thread.run(self._core.salvage(namespace))

    def invalidate(
        self,
        keys: Sequence[str] = (),
        prefixes: Sequence[str] = (),
        *,
        everything: bool = False,
        namespace: str | None = None,
        source: str | None = None,
    ) -> PublishResult:
        return self._thread.run(self._core.invalidate(
            keys, prefixes, everything=everything, namespace=namespace, source=source))

    def plan_rollback(self, to_version: int, *,
                      namespace: str | None = None) -> RollbackPlan:
        return self._thread.run(self._core.plan_rollback(to_version, namespace=namespace))

    def rollback(self, to_version: int, *, namespace: str | None = None,
                 source: str = "rollback", expected_version: int | None = None) -> PublishResult:
        return self._thread.run(self._core.rollback(to_version, namespace=namespace,
                                                    source=source,
                                                    expected_version=expected_version))

    def snapshot(self, namespace: str | None = None) -> Snapshot:
        return self._thread.run(self._core.snapshot(namespace))

    def version(self, namespace: str | None = None) -> int:
        return self._thread.run(self._core.version(namespace))

    def history(self, namespace: str | None = None, *, limit: int = 20,
                since: int = 0) -> list[Envelope]:
        return self._thread.run(self._core.history(namespace, limit=limit, since=since))

    def subscribers(self, namespace: str | None = None) -> int:
        return self._thread.run(self._core.subscribers(namespace))


async def _build_publisher(config: HotReloadConfig | str | None, namespace: str | None,
                           source: str, origin: str | None) -> AsyncPublisher:
    return AsyncPublisher(config, namespace=namespace, source=source, origin=origin)
