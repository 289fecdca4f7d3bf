"""The file source against the real filesystem and real inotify (no Redis needed).

Every wait is on a condition with a deadline (the fake sink sets an event on each call). To show
that something did *not* happen, a sentinel file in the same directory is changed afterwards:
the watcher handles a directory's events in order, so once the sentinel's document arrives, any
reaction to the earlier change would have arrived too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hotreload.config import FileSource as FileSourceConfig
from hotreload.daemon.sources import Source
from hotreload.daemon.sources import files as files_mod
from hotreload.daemon.sources.files import FileSource
from hotreload.documents import MAX_DOCUMENT_BYTES, check_document
from hotreload.errors import ConfigError

pytestmark = pytest.mark.integration

TESTS_DIR = Path(__file__).resolve().parents[1]
DEADLINE = 10.0
GOOD = "db:\n  host: db1\n  pool_size: 5\nname: app\n"


class RecordingSink:
    """A `Sink` that records every call and wakes waiters."""

    def __init__(self) -> None:
        self.desired_calls: list[tuple[str, dict[str, Any], str, float]] = []
        self.rejections: list[tuple[str, str, str]] = []
        self.accepts: list[str] = []
        self._event = asyncio.Event()

    async def desired(self, namespace: str, document: Mapping[str, Any], *, source: str) -> None:
        self.desired_calls.append((namespace, dict(document), source, time.perf_counter()))
        self._event.set()

    async def invalidate(self, namespace: str, keys: Sequence[str] = (),
                         prefixes: Sequence[str] = (), *, everything: bool = False,
                         source: str) -> None:
        raise AssertionError("the file source never invalidates")

    def rejected(self, source: str, reason: str, detail: str) -> None:
        self.rejections.append((source, reason, detail))
        self._event.set()

    def accepted(self, source: str) -> None:
        self.accepts.append(source)
        self._event.set()

    def docs(self, namespace: str) -> list[dict[str, Any]]:
        return [doc for ns, doc, _, _ in self.desired_calls if ns == namespace]

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(DEADLINE):
                while not predicate():
                    self._event.clear()
                    await self._event.wait()
        except TimeoutError:
            pytest.fail(f"timed out after {DEADLINE}s waiting for {what}; calls: "
                        f"desired={self.desired_calls} rejected={self.rejections}")

    async def wait_doc(self, namespace: str, expected: Mapping[str, Any]) -> float:
        """Wait for a desired() of exactly ``expected``; return when it was called."""
        def found() -> bool:
            return any(doc == expected for doc in self.docs(namespace))
        await self.wait_until(found, f"{namespace} = {expected}")
        return next(t for ns, doc, _, t in self.desired_calls
                    if ns == namespace and doc == expected)

    async def wait_rejected(self, count: int) -> tuple[str, str, str]:
        await self.wait_until(lambda: len(self.rejections) >= count, f"{count} rejections")
        return self.rejections[count - 1]


@asynccontextmanager
async def running(source: FileSource, sink: RecordingSink) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(sink))
    ready = asyncio.create_task(source.ready.wait())
    try:
        await asyncio.wait([task, ready], timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # run() failed: show why
            pytest.fail("run() returned")
        if not ready.done():
            pytest.fail(f"not ready within {DEADLINE}s")
        yield
    finally:
        ready.cancel()
        task.cancel()
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(task, ready, return_exceptions=True)


def cfg(path: Path, namespace: str = "app", schema: str | None = None) -> FileSourceConfig:
    return FileSourceConfig.model_validate({"path": str(path), "namespace": namespace,
                                            "schema": schema})


def doc(pool: int = 5, host: str = "db1", extra: Mapping[str, Any] = {}) -> dict[str, Any]:
    return {"db": {"host": host, "pool_size": pool}, "name": "app", **extra}


def yaml_of(pool: int = 5, host: str = "db1") -> str:
    return f"db:\n  host: {host}\n  pool_size: {pool}\nname: app\n"


def replace_save(path: Path, text: str) -> None:
    """An editor's atomic save: write a temp file, then rename it over the original."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def schemas(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    return "file_schemas:AppSettings"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "app.yaml").write_text(GOOD)
    (d / "sentinel.json").write_text('{"n": 0}')
    return d


class Sentinel:
    """A second file in the same directory, changed to flush the watcher's queue."""

    def __init__(self, sink: RecordingSink, path: Path) -> None:
        self.sink, self.path, self.n = sink, path, 0

    async def flush(self) -> None:
        self.n += 1
        replace_save(self.path, f'{{"n": {self.n}}}')
        await self.sink.wait_doc("sentinel", {"n": self.n})


def two_files(conf: Path, schema: str | None = None) -> list[FileSourceConfig]:
    return [cfg(conf / "app.yaml", schema=schema), cfg(conf / "sentinel.json", "sentinel")]


async def test_initial_reconcile_then_in_place_write(conf: Path) -> None:
    sink = RecordingSink()
    source = FileSource(two_files(conf))
    async with running(source, sink):
        await sink.wait_doc("app", doc())
        assert sink.desired_calls[0][2] == f"file:{conf / 'app.yaml'}"
        (conf / "app.yaml").write_text(yaml_of(pool=7))  # truncate + write, same inode
        await sink.wait_doc("app", doc(pool=7))
    assert sink.rejections == []


async def test_rename_save(conf: Path) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        for pool in (6, 7, 8):  # every save, not just the first (the file-watch bug)
            replace_save(conf / "app.yaml", yaml_of(pool=pool))
            await sink.wait_doc("app", doc(pool=pool))
    assert sink.rejections == []


async def test_sed_in_place(conf: Path) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        await sink.wait_doc("app", doc())
        for old, new in ((5, 9), (9, 10)):
            proc = await asyncio.create_subprocess_exec(
                "sed", "-i", f"s/pool_size: {old}/pool_size: {new}/", str(conf / "app.yaml"))
            assert await proc.wait() == 0
            await sink.wait_doc("app", doc(pool=new))


def _kubelet_write(volume: Path, files: Mapping[str, str]) -> None:
    """What kubelet's AtomicWriter does for a ConfigMap volume update."""
    stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    new_dir = volume / f"{stamp}{os.urandom(4).hex()}"
    new_dir.mkdir()
    for name, text in files.items():
        (new_dir / name).write_text(text)
    data = volume / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = volume / "..data_tmp"
    os.symlink(new_dir.name, tmp)
    os.rename(tmp, data)  # the atomic swap
    for name in files:
        link = volume / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)
    if old is not None:
        shutil.rmtree(volume / old)


async def test_configmap_symlink_swap(tmp_path: Path) -> None:
    volume = tmp_path / "cm"
    volume.mkdir()
    _kubelet_write(volume, {"app.yaml": GOOD, "sentinel.json": '{"n": 0}'})
    assert (volume / "app.yaml").is_symlink()
    sink = RecordingSink()
    async with running(FileSource(two_files(volume)), sink):
        await sink.wait_doc("app", doc())
        for pool in (11, 12, 13):
            _kubelet_write(volume, {"app.yaml": yaml_of(pool=pool), "sentinel.json": '{"n": 0}'})
            await sink.wait_doc("app", doc(pool=pool))
        assert len(list(volume.glob("..2*"))) == 1
    assert sink.rejections == []
    assert len(sink.docs("sentinel")) == 1  # unchanged content is never re-sent


async def test_invalid_yaml_then_valid_save(conf: Path) -> None:
    sink = RecordingSink()
    source = FileSource(two_files(conf))
    async with running(source, sink):
        await sink.wait_doc("app", doc())
        replace_save(conf / "app.yaml", "db:\n  host: db1\n  pool_size: [5\nname: app\n")
        src, reason, detail = await sink.wait_rejected(1)
        assert (src, reason) == (f"file:{conf / 'app.yaml'}", "yaml")
        assert detail.startswith(f"{conf / 'app.yaml'}:4:")
        assert "invalid YAML" in detail
        accepted_before = len(sink.accepts)
        replace_save(conf / "app.yaml", yaml_of(pool=21))
        await sink.wait_doc("app", doc(pool=21))
        await sink.wait_until(lambda: len(sink.accepts) > accepted_before, "accepted()")
    assert sink.docs("app") == [doc(), doc(pool=21)]  # nothing published for the bad save


async def test_schema_error_keeps_last_good(conf: Path, schemas: str) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf, schemas)), sink):
        await sink.wait_doc("app", doc())
        replace_save(conf / "app.yaml", "db:\n  host: db1\n  pool_size: many\nname: app\n")
        _, reason, detail = await sink.wait_rejected(1)
        assert reason == "schema"
        assert "db.pool_size (line 3)" in detail
        assert "integer" in detail
        replace_save(conf / "app.yaml", yaml_of(pool=5) + "colour: red\n")
        _, reason, detail = await sink.wait_rejected(2)
        assert reason == "schema"
        assert "colour (line 5): unknown key" in detail
        await Sentinel(sink, conf / "sentinel.json").flush()
        assert sink.docs("app") == [doc()]
        replace_save(conf / "app.yaml", yaml_of(pool=30))
        await sink.wait_doc("app", doc(pool=30))


async def test_empty_and_wrong_type_rejected(conf: Path) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        await sink.wait_doc("app", doc())
        replace_save(conf / "app.yaml", "")
        assert (await sink.wait_rejected(1))[1] == "empty"
        replace_save(conf / "app.yaml", "- just\n- a list\n")
        assert (await sink.wait_rejected(2))[1] == "type"
        replace_save(conf / "app.yaml", yaml_of(pool=5)[:-9])  # cut mid-file: "name: " gone
        await Sentinel(sink, conf / "sentinel.json").flush()
        assert sink.docs("app")[-1] in (doc(), {"db": {"host": "db1", "pool_size": 5}})


async def test_deleted_then_recreated(conf: Path) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        await sink.wait_doc("app", doc())
        (conf / "app.yaml").unlink()
        _, reason, detail = await sink.wait_rejected(1)
        assert reason == "missing"
        assert "no such file" in detail
        (conf / "app.yaml").write_text(yaml_of(pool=40))
        await sink.wait_doc("app", doc(pool=40))


async def test_directory_removed_and_recreated(tmp_path: Path) -> None:
    conf = tmp_path / "deep" / "conf"
    conf.mkdir(parents=True)
    (conf / "app.yaml").write_text(GOOD)
    sink = RecordingSink()
    async with running(FileSource([cfg(conf / "app.yaml")]), sink):
        await sink.wait_doc("app", doc())
        shutil.rmtree(tmp_path / "deep")
        assert (await sink.wait_rejected(1))[1] == "missing"
        conf.mkdir(parents=True)
        (conf / "app.yaml").write_text(yaml_of(pool=50))
        await sink.wait_doc("app", doc(pool=50))
        replace_save(conf / "app.yaml", yaml_of(pool=51))  # the new directory is watched
        await sink.wait_doc("app", doc(pool=51))


async def test_missing_directory_at_start(tmp_path: Path) -> None:
    conf = tmp_path / "later"
    sink = RecordingSink()
    async with running(FileSource([cfg(conf / "app.yaml")]), sink):
        assert (await sink.wait_rejected(1))[1] == "missing"
        conf.mkdir()
        replace_save(conf / "app.yaml", GOOD)
        await sink.wait_doc("app", doc())


async def test_many_keys_one_save_one_desired(conf: Path) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        await sink.wait_doc("app", doc())
        big = {f"k{i}": i for i in range(200)}
        text = yaml_of(pool=60) + "".join(f"{k}: {v}\n" for k, v in big.items())
        (conf / "app.yaml").write_text(text)  # in place: truncate, then one write
        await sink.wait_doc("app", doc(pool=60, extra=big))
        await Sentinel(sink, conf / "sentinel.json").flush()
    assert sink.docs("app") == [doc(), doc(pool=60, extra=big)]


async def test_unchanged_content_is_not_resent(conf: Path) -> None:
    sink = RecordingSink()
    sentinel = Sentinel(sink, conf / "sentinel.json")
    async with running(FileSource(two_files(conf)), sink):
        await sink.wait_doc("app", doc())
        os.utime(conf / "app.yaml")  # touch
        await sentinel.flush()
        (conf / "app.yaml").write_text(GOOD)  # same bytes, in place
        await sentinel.flush()
        replace_save(conf / "app.yaml", GOOD)  # same bytes, new inode
        await sentinel.flush()
    assert sink.docs("app") == [doc()]
    assert sink.rejections == []


async def test_reconcile_resends_last_good(conf: Path) -> None:
    sink = RecordingSink()
    source = FileSource(two_files(conf))
    await source.reconcile(sink)
    assert sink.docs("app") == [doc()]
    (conf / "app.yaml").write_text("db: [")
    await source.reconcile(sink)
    await source.reconcile(sink)
    assert [r[1] for r in sink.rejections] == ["yaml"]  # counted once, not per reconcile
    assert sink.docs("app") == [doc(), doc(), doc()]  # the last good stays desired


async def test_polling_fallback_when_inotify_fails(conf: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from watchfiles import awatch as real
    modes: list[bool] = []

    def failing_awatch(*paths: Any, force_polling: bool = False, **kw: Any) -> Any:
        modes.append(force_polling)
        if not force_polling:
            raise OSError(28, "inotify watch limit reached")
        return real(*paths, force_polling=True, **{**kw, "poll_delay_ms": 50})

    monkeypatch.setattr(files_mod, "awatch", failing_awatch)
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        replace_save(conf / "app.yaml", yaml_of(pool=70))
        await sink.wait_doc("app", doc(pool=70))
    assert modes[:2] == [False, True]


async def test_cancellation_is_prompt(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "IDLE_CHECK_MS", 60_000)  # only the stop event can end it
    source = FileSource(two_files(conf))
    task = asyncio.create_task(source.run(RecordingSink()))
    async with asyncio.timeout(DEADLINE):
        await source.ready.wait()
    started = time.perf_counter()
    task.cancel()
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(task, return_exceptions=True)
    assert time.perf_counter() - started < 5.0
    assert task.cancelled()


async def test_two_files_one_namespace_is_a_config_error(conf: Path) -> None:
    with pytest.raises(ConfigError, match="namespace 'app' is fed by both"):
        FileSource([cfg(conf / "app.yaml"), cfg(conf / "sentinel.json")])


async def test_save_to_desired_latency(conf: Path) -> None:
    sink = RecordingSink()
    latencies = []
    async with running(FileSource(two_files(conf)), sink):
        await sink.wait_doc("app", doc())
        for pool in range(1, 31):
            started = time.perf_counter()
            replace_save(conf / "app.yaml", yaml_of(pool=pool + 100))
            latencies.append(await sink.wait_doc("app", doc(pool=pool + 100)) - started)
    ms = sorted(x * 1000 for x in latencies)
    print(f"\nsave -> desired() latency over {len(ms)} rename-saves: "
          f"median {statistics.median(ms):.1f} ms, p90 {ms[int(len(ms) * 0.9)]:.1f} ms, "
          f"max {ms[-1]:.1f} ms")


async def test_no_files_is_a_source_that_idles() -> None:
    source: Source = FileSource([])
    assert source.name == "files"
    sink = RecordingSink()
    await source.reconcile(sink)
    assert isinstance(source, FileSource)
    async with running(source, sink):
        pass
    assert sink.desired_calls == []


class FailingSink(RecordingSink):
    """desired() raises (e.g. Redis is down) for the first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def desired(self, namespace: str, document: Mapping[str, Any], *, source: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            self._event.set()
            raise ConnectionError("redis is down")
        await super().desired(namespace, document, source=source)


async def test_sink_failure_is_logged_and_reconcile_retries(
        conf: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = FailingSink(failures=2)  # the initial reconcile's two files
    source = FileSource(two_files(conf))
    async with running(source, sink):
        replace_save(conf / "app.yaml", yaml_of(pool=80))  # the watcher survived
        await sink.wait_doc("app", doc(pool=80))
        await source.reconcile(sink)
        await sink.wait_doc("sentinel", {"n": 0})
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert actions.count("sink_error") == 2


async def test_log_actions(conf: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hotreload")
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        replace_save(conf / "app.yaml", "a: [")
        (_, reason, detail) = await sink.wait_rejected(1)
    assert (reason, detail.startswith(f"{conf / 'app.yaml'}:1:5: invalid YAML")) == ("yaml", True)
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert "file_changed" in actions
    assert "rejected" not in actions  # the sink logs it (the daemon's: once, see test_daemon_logs)


def _slow_in_place_write(path: Path, text: str) -> None:
    """An editor that truncates, then writes a moment later (the reader may see it empty)."""
    with path.open("w") as fh:
        fh.flush()
        time.sleep(0.005)  # simulates the writer, not a synchronisation
        fh.write(text)


async def test_truncate_then_write_is_not_a_rejection(conf: Path) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        await sink.wait_doc("app", doc())
        for pool in (90, 91, 92):
            await asyncio.to_thread(_slow_in_place_write, conf / "app.yaml", yaml_of(pool=pool))
            await sink.wait_doc("app", doc(pool=pool))
    assert sink.rejections == []
    assert sink.docs("app") == [doc(), doc(pool=90), doc(pool=91), doc(pool=92)]


async def test_vim_style_backup_save(conf: Path) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        await sink.wait_doc("app", doc())
        app = conf / "app.yaml"
        os.rename(app, conf / "app.yaml~")  # the file is missing for a moment
        app.write_text(yaml_of(pool=95))
        (conf / "app.yaml~").unlink()
        await sink.wait_doc("app", doc(pool=95))
    assert sink.rejections == []


async def test_files_in_several_directories(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b" / "c"]
    for d in dirs:
        d.mkdir(parents=True)
        (d / "s.json").write_text('{"v": 0}')
    sink = RecordingSink()
    source = FileSource([cfg(dirs[0] / "s.json", "a"), cfg(dirs[1] / "s.json", "c")])
    async with running(source, sink):
        for ns, d in zip(("a", "c"), dirs, strict=True):
            replace_save(d / "s.json", f'{{"v": "{ns}"}}')
            await sink.wait_doc(ns, {"v": ns})


# --------------------------------------------------------------------------- hostile files

DEEP_YAML = "b: " + "[" * 5000 + "]" * 5000 + "\n"


async def test_deeply_nested_file_is_a_rejection_and_every_watch_lives_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The reviewer's repro: a deep YAML save killed the source and no file published again."""
    caplog.set_level(logging.INFO, logger="hotreload")
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    (dirs[0] / "bad.yaml").write_text("b: 1\n")
    (dirs[0] / "good.yaml").write_text("a: 1\n")
    (dirs[1] / "other.json").write_text('{"c": 1}')
    sink = RecordingSink()
    source = FileSource([cfg(dirs[0] / "bad.yaml", "bad"), cfg(dirs[0] / "good.yaml", "good"),
                         cfg(dirs[1] / "other.json", "other")])
    async with running(source, sink):
        (dirs[0] / "bad.yaml").write_text(DEEP_YAML)
        _, reason, detail = await sink.wait_rejected(1)
        assert reason == "yaml"
        assert detail == f"{dirs[0] / 'bad.yaml'}: invalid YAML: nested too deeply"
        replace_save(dirs[0] / "good.yaml", "a: 2\n")  # same directory
        await sink.wait_doc("good", {"a": 2})
        replace_save(dirs[1] / "other.json", '{"c": 2}')  # another directory
        await sink.wait_doc("other", {"c": 2})
        await source.reconcile(sink)  # the daemon's periodic reconcile: the last good stays
        assert sink.docs("bad") == [{"b": 1}, {"b": 1}]
        replace_save(dirs[0] / "bad.yaml", "b: 2\n")
        await sink.wait_doc("bad", {"b": 2})
    assert len(sink.rejections) == 1
    actions = {getattr(r, "action", None) for r in caplog.records}
    assert not actions & {"watch_polling", "watch_failed"}  # a bad file is no inotify failure


BOMB_YAML = "\n".join(
    [f"{n}: &{n} [" + ",".join([f"*{p}" if p else "lol"] * 9) + "]"
     for p, n in zip(["", *"abcdefgh"], "abcdefghi", strict=True)]) + "\n"


async def test_an_anchor_bomb_is_rejected_at_once_and_a_later_good_save_publishes(
        conf: Path) -> None:
    """A 300-byte "billion laughs" save held up a good save 0.3 s later by 22.7 s."""
    assert len(BOMB_YAML) < 350
    (conf / "bomb.yaml").write_text("b: 1\n")
    sink = RecordingSink()
    # the bomb is read first: a directory's files are checked one after the other
    async with running(FileSource([cfg(conf / "bomb.yaml", "bomb"), *two_files(conf)]), sink):
        await sink.wait_doc("bomb", {"b": 1})
        replace_save(conf / "bomb.yaml", BOMB_YAML)
        replace_save(conf / "app.yaml", yaml_of(pool=9))  # same directory, right after
        await sink.wait_doc("app", doc(pool=9))
        _, reason, detail = await sink.wait_rejected(1)
    assert reason == "too_large"
    assert detail.startswith(f"{conf / 'bomb.yaml'}:7:4: YAML too large: with its aliases "
                             "expanded, the document holds more than")
    assert sink.docs("bomb") == [{"b": 1}] and len(sink.rejections) == 1


async def test_unexpected_error_while_checking_is_a_rejection(
        conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = check_document

    def check(raw: bytes, *args: Any, **kw: Any) -> Any:
        if b"boom" in raw:
            raise ZeroDivisionError("a bug")
        return real(raw, *args, **kw)

    monkeypatch.setattr(files_mod, "check_document", check)
    sink = RecordingSink()
    sentinel = Sentinel(sink, conf / "sentinel.json")
    async with running(FileSource(two_files(conf)), sink):
        replace_save(conf / "app.yaml", "boom: 1\n")
        _, reason, detail = await sink.wait_rejected(1)
        assert reason == "yaml"
        assert detail == (f"{conf / 'app.yaml'}: invalid YAML: cannot be checked: "
                          "ZeroDivisionError: a bug")
        await sentinel.flush()
        replace_save(conf / "app.yaml", yaml_of(pool=7))
        await sink.wait_doc("app", doc(pool=7))
    assert len(sink.rejections) == 1


async def test_a_failing_watcher_never_stops_the_other_directories(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A watch that fails unexpectedly is retried alone; it must not set the shared stop."""
    monkeypatch.setattr(files_mod, "RETRY_S", 0.05)
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
        (d / "s.json").write_text('{"v": 0}')
    real = FileSource._check_all
    fail = {"armed": False}

    async def check_all(self: FileSource, files: Sequence[Any], sink: Any) -> None:
        if fail["armed"] and files[0].config.namespace == "a":
            fail["armed"] = False
            raise LookupError("a bug in the watcher")
        await real(self, files, sink)

    monkeypatch.setattr(FileSource, "_check_all", check_all)
    sink = RecordingSink()
    source = FileSource([cfg(dirs[0] / "s.json", "a"), cfg(dirs[1] / "s.json", "b")])
    async with running(source, sink):
        fail["armed"] = True
        replace_save(dirs[0] / "s.json", '{"v": 1}')  # a's watcher fails on this event
        await sink.wait_until(lambda: not fail["armed"], "a's watcher to fail")
        replace_save(dirs[1] / "s.json", '{"v": 2}')
        await sink.wait_doc("b", {"v": 2})  # b's watcher was not stopped
        await sink.wait_doc("a", {"v": 1})  # a's watcher re-armed and read the file again
        replace_save(dirs[0] / "s.json", '{"v": 3}')
        await sink.wait_doc("a", {"v": 3})
    assert "watch_failed" in {getattr(r, "action", None) for r in caplog.records}


async def test_a_fifo_in_place_of_the_file_never_blocks(conf: Path) -> None:
    """A FIFO without a writer: opening it blocked the whole loop (and SIGTERM) forever."""
    sink = RecordingSink()
    sentinel = Sentinel(sink, conf / "sentinel.json")
    source = FileSource(two_files(conf))
    task = asyncio.create_task(source.run(sink))
    async with asyncio.timeout(DEADLINE):
        await source.ready.wait()
    (conf / "app.yaml").unlink()
    os.mkfifo(conf / "app.yaml")
    await sink.wait_until(lambda: any(r[1] == "read" for r in sink.rejections), "rejection")
    assert [r[1:] for r in sink.rejections] == [
        ("read", f"{conf / 'app.yaml'}: cannot read: not a regular file (a FIFO)")]
    await sentinel.flush()  # the loop and the watcher are alive
    await source.reconcile(sink)
    task.cancel()
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_an_oversized_file_is_rejected(conf: Path) -> None:
    sink = RecordingSink()
    async with running(FileSource(two_files(conf)), sink):
        with (conf / "app.yaml").open("ab") as fh:
            fh.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse
        _, reason, detail = await sink.wait_rejected(1)
        assert reason == "read"
        assert detail.endswith(f"cannot read: {MAX_DOCUMENT_BYTES + 1} bytes is over the limit "
                               f"of {MAX_DOCUMENT_BYTES} bytes")
        replace_save(conf / "app.yaml", yaml_of(pool=8))
        await sink.wait_doc("app", doc(pool=8))
