"""The file source: settings files on disk, watched through their directories.

Each file's **directory** is watched (``recursive=False``), never the file: a watch on a path goes
deaf after the first atomic save, and a Kubernetes ConfigMap swap never names the file. Any event
in a directory re-reads its files and compares content hashes, so in-place writes, rename-saves,
``sed -i`` and the ConfigMap ``..data`` swap look the same, and a ``touch`` publishes nothing.

A changed good document goes to `Sink.desired`; a bad one goes to `Sink.rejected` (once per bad
content, after a short settle so an editor's truncate-then-write is not reported; the sink logs
it) and the last good one stays live. A vanished directory is awaited by watching its nearest
existing ancestor; if inotify fails (e.g. ``fs.inotify.max_user_watches``) the watch falls back
to polling.

Files are read and parsed in a worker thread, so a slow disk or a big YAML file never stalls the
event loop. Whatever a file holds is at worst a rejection of that file: one directory's watcher
failing never stops the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel
from watchfiles import Change, awatch

from ...config import FileSource as FileSourceConfig
from ...documents import (
    Document,
    Format,
    check_document,
    detect_format,
    digest,
    load_schema,
    read_bytes,
)
from ...errors import ConfigError, DocumentError, SettingsRejected
from .base import Sink

log = logging.getLogger("hotreload.daemon.sources.files")

IDLE_CHECK_MS: Final = 1000
"""After this long without events a watcher re-reads its files (cheap: hashes decide) and checks
that its directory is still the one it watches: a safety net for lost events, polling and
symlinks into other directories."""
SETTLE_S: Final = 0.1
"""A newly bad document must still be bad (same bytes) this much later to be rejected."""
SETTLE_TRIES: Final = 5
MISSING: Final = "missing"
RETRY_S: Final = 1.0
REARM_PAUSE_S: Final = 0.01


@dataclass(eq=False)
class _File:
    config: FileSourceConfig
    path: str
    source: str
    format: Format
    model: type[BaseModel] | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seen: str | None = None  # digest of the last bytes read (good or bad), or MISSING
    good: Document | None = None  # the last good document: the desired state

    def read(self) -> tuple[str, Document | DocumentError | SettingsRejected]:
        """(digest or MISSING, the document or why it is bad); never raises."""
        try:
            raw = read_bytes(self.path)
        except DocumentError as exc:
            return MISSING if exc.reason == "missing" else f"error:{exc}", exc
        except Exception as exc:  # last resort: a bad file is a rejection, never a crash
            why = f"{self.config.path}: cannot read: {type(exc).__name__}: {exc}"
            return f"error:{why}", DocumentError(why, reason="read")
        try:
            doc = check_document(raw, self.format, origin=self.config.path, model=self.model)
        except (DocumentError, SettingsRejected) as exc:
            return digest(raw), exc
        except Exception as exc:  # last resort, as above
            log.debug("checking %s failed", self.config.path, exc_info=True)
            fmt = self.format.upper()
            return digest(raw), DocumentError(
                f"{self.config.path}: invalid {fmt}: cannot be checked: {type(exc).__name__}: "
                f"{exc}", reason=self.format)
        return doc.digest, doc


class FileSource:
    """Desired state from settings files; one namespace per file."""

    name = "files"

    def __init__(
        self,
        files: Sequence[FileSourceConfig],
        *,
        step_ms: int = 1,
        debounce_ms: int = 50,
        force_polling: bool = False,
        poll_delay_ms: int = 300,
        config_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """``config_dir``: the config file's directory, where schemas are looked for first
        (`hotreload.documents.load_schema`)."""
        self._step_ms = step_ms
        self._debounce_ms = max(debounce_ms, step_ms + 1)  # watchfiles #360: keep step < debounce
        self._force_polling = force_polling
        self._poll_delay_ms = poll_delay_ms
        self._files: list[_File] = []
        self._dirs: dict[str, list[_File]] = {}
        owners: dict[str, str] = {}
        for cfg in files:
            if cfg.namespace in owners:
                raise ConfigError(f"sources.files: namespace {cfg.namespace!r} is fed by both "
                                  f"{owners[cfg.namespace]} and {cfg.path}")
            owners[cfg.namespace] = cfg.path
            path = os.path.abspath(cfg.path)
            model = load_schema(cfg.schema_, config_dir=config_dir) if cfg.schema_ else None
            entry = _File(cfg, path, f"file:{cfg.path}", detect_format(path, cfg.format), model)
            self._files.append(entry)
            self._dirs.setdefault(os.path.dirname(path), []).append(entry)
        self.ready = asyncio.Event()
        """Set once `run` has done its first reconcile and watches every directory."""
        self.reporters: tuple[str, ...] = tuple(entry.source for entry in self._files)
        """The names this source reports to the sink under (``file:<path>``, one per file)."""

    async def reconcile(self, sink: Sink) -> None:
        """Re-read every file; hand every good (or last good) document to ``sink``."""
        for entry in self._files:
            await self._check(entry, sink, force=True)

    async def run(self, sink: Sink) -> None:
        """Reconcile, then watch every directory until cancelled."""
        self.ready.clear()
        stop = asyncio.Event()  # awatch polls it every step: cancellation is prompt
        await self.reconcile(sink)
        armed: set[str] = set()

        def on_armed(directory: str) -> None:
            armed.add(directory)
            if len(armed) == len(self._dirs):
                self.ready.set()

        tasks = [asyncio.create_task(self._watch(d, files, sink, stop, on_armed),
                                     name=f"hotreload-watch:{d}")
                 for d, files in self._dirs.items()]
        try:
            if not tasks:
                self.ready.set()
                await stop.wait()  # nothing to watch: idle until cancelled
                return
            # asyncio.wait (unlike gather) gives way at once when we are cancelled, so the
            # finally below sets `stop` before anyone waits for a watcher thread.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

    # ----------------------------------------------------------------------- reading

    async def _check(self, entry: _File, sink: Sink, *, force: bool = False) -> None:
        async with entry.lock:
            key, result = await asyncio.to_thread(entry.read)
            if key != entry.seen and not isinstance(result, Document):
                key, result = await _settle(entry, key, result)
            changed = key != entry.seen
            entry.seen = key
            if isinstance(result, Document):
                if changed:
                    log.info("%s changed: %d keys for namespace %s", entry.config.path,
                             len(result.flat), entry.config.namespace,
                             extra={"action": "file_changed", "source": entry.source})
                entry.good = result
                if changed or force:
                    await _tell(entry, sink.desired, entry.config.namespace, result.data,
                                source=entry.source)
                    await _tell(entry, sink.accepted, entry.source)
                return
            if changed:  # the sink counts, shows and logs it (once)
                reason = "schema" if isinstance(result, SettingsRejected) else result.reason
                await _tell(entry, sink.rejected, entry.source, reason, str(result))
            if force and entry.good is not None:
                await _tell(entry, sink.desired, entry.config.namespace, entry.good.data,
                            source=entry.source)

    async def _check_all(self, files: Sequence[_File], sink: Sink) -> None:
        for entry in files:
            await self._check(entry, sink)

    # ----------------------------------------------------------------------- watching

    async def _watch(self, directory: str, files: list[_File], sink: Sink, stop: asyncio.Event,
                     on_armed: Callable[[str], None]) -> None:
        polling = self._force_polling
        while not stop.is_set():
            target = _existing(directory)
            if target != directory:
                log.warning("directory %s is missing; watching %s until it exists", directory,
                            target, extra={"action": "watch_dir_missing"})
            try:
                await self._watch_once(directory, target, files, sink, stop, on_armed, polling)
            except FileNotFoundError:
                await _pause(stop, REARM_PAUSE_S)  # vanished while arming: look again
                continue
            except (OSError, RuntimeError) as exc:
                if polling:
                    log.error("watching %s failed: %s; retrying", target, exc,
                              extra={"action": "watch_failed"})
                    await _pause(stop, RETRY_S)
                else:
                    log.warning("watching %s failed (%s); falling back to polling", target, exc,
                                extra={"action": "watch_polling"})
                    polling = True
            except Exception:  # a bug: keep this directory's watch alive, never the others'
                log.exception("watching %s failed; retrying", target,
                              extra={"action": "watch_failed"})
                await _pause(stop, RETRY_S)

    async def _watch_once(self, directory: str, target: str, files: list[_File], sink: Sink,
                          stop: asyncio.Event, on_armed: Callable[[str], None],
                          polling: bool) -> None:
        """Watch ``target`` until it is no longer the right thing to watch."""
        ident = _ident(target)
        done = _LinkedEvent(stop)  # ends this watch only; `stop` ends every watch
        changes: AsyncGenerator[set[tuple[Change, str]], None] = awatch(
            target, watch_filter=None, recursive=False, step=self._step_ms,
            debounce=self._debounce_ms, stop_event=done, rust_timeout=IDLE_CHECK_MS,
            yield_on_timeout=True, force_polling=polling, poll_delay_ms=self._poll_delay_ms,
        )
        async with aclosing(changes):
            # awatch arms its watch synchronously in the first step of its first __anext__:
            # one turn of the loop later, no event can be missed any more.
            first: asyncio.Future[set[tuple[Change, str]]] = asyncio.ensure_future(anext(changes))
            pending: asyncio.Future[set[tuple[Change, str]]] | None = first
            try:
                await asyncio.sleep(0)
                if first.done():
                    first.result()  # arming failed: raise it
                log.debug("watching %s for %s", target, directory, extra={"action": "watching"})
                await self._check_all(files, sink)  # whatever happened before the watch
                on_armed(directory)
                while True:
                    try:
                        await (pending if pending is not None else anext(changes))
                    except StopAsyncIteration:
                        return  # stop is set
                    pending = None
                    if target == directory:  # an idle tick (empty batch) re-reads too
                        await self._check_all(files, sink)
                    if _moved(directory, target, ident):
                        log.info("re-arming the watch on %s", directory,
                                 extra={"action": "watch_rearmed"})
                        return
            finally:
                if pending is not None and not pending.done():
                    done.set()  # cancelled or failed: let awatch's thread return now
                    pending.cancel()
                    await asyncio.wait([pending])


class _LinkedEvent(asyncio.Event):
    """Set on its own, or when ``parent`` is: awatch sets its stop event when cancelled, and a
    watch that ends must not stop the watches of the other directories."""

    def __init__(self, parent: asyncio.Event) -> None:
        super().__init__()
        self._parent = parent

    def is_set(self) -> bool:  # polled by awatch's thread: reads two flags, no loop calls
        return super().is_set() or self._parent.is_set()


async def _settle(entry: _File, key: str, result: Document | DocumentError | SettingsRejected,
                  ) -> tuple[str, Document | DocumentError | SettingsRejected]:
    """Re-read a newly bad file until it is good or the same bytes stay bad for `SETTLE_S`."""
    for _ in range(SETTLE_TRIES):
        await asyncio.sleep(SETTLE_S)
        again_key, again = await asyncio.to_thread(entry.read)
        if isinstance(again, Document) or again_key == key:
            return again_key, again
        key, result = again_key, again
    return key, result


async def _tell(entry: _File, method: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Call a sink method; a failing sink is logged, never fatal (the next reconcile retries)."""
    try:
        result = method(*args, **kwargs)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("the sink failed on %s", entry.config.path,
                      extra={"action": "sink_error", "source": entry.source})


def _existing(directory: str) -> str:
    """``directory`` if it exists, else its nearest existing ancestor."""
    path = directory
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _moved(directory: str, target: str, ident: tuple[int, int] | None) -> bool:
    """Whether the watch on ``target`` must be re-armed (gone, replaced, or dir is back)."""
    return _ident(target) != ident or (target != directory and os.path.isdir(directory))


def _ident(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
