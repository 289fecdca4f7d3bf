"""The CLI against the real Redis: through click's runner, and `tail` as a real process."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hotreload import Publisher
from hotreload.cli import cli
from hotreload.cli._base import EXIT_STDOUT_GONE
from hotreload.cli._register import register
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration
register(cli)


@pytest.fixture
def run(tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"redis:\n  url: {REDIS_URL}\nnamespace: {namespace}\n")
    monkeypatch.delenv("HOTRELOAD_CONFIG", raising=False)

    def invoke(*args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(cli, ["-c", str(cfg), *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output + result.stderr
        return result

    return invoke


def test_publish_get_history_rollback(run) -> None:  # type: ignore[no-untyped-def]
    assert "published v1 (3 changes)" in run("publish", "db.pool_size=10", "db.host=x",
                                             "flags=[1,2]").stdout
    assert run("publish", "db.pool_size=10").stdout.strip() == "no change (v1)"
    assert "published v2" in run("publish", "db.pool_size=20", "--delete", "flags").stdout
    assert run("get", "db.pool_size").stdout.strip() == "20"
    assert run("get", "db.host").stdout.strip() == "x"
    got = json.loads(run("get", "--json").stdout)
    assert got["version"] == 2
    assert got["settings"] == {"db": {"host": "x", "pool_size": 20}}
    assert json.loads(run("get", "db", "--json").stdout)["value"] == {"host": "x",
                                                                       "pool_size": 20}
    hist = run("history").stdout.splitlines()
    assert hist[0].startswith("v1 ") and "db.pool_size: added 10" in hist[0]
    assert "db.pool_size: 10 -> 20" in hist[1] and "flags: deleted" in hist[1]
    assert [json.loads(x)["version"] for x in run("history", "--json").stdout.splitlines()] \
        == [1, 2]
    assert "published v3 (rollback to v1" in run("rollback", "1", "--yes").stdout
    assert json.loads(run("get", "--json").stdout)["settings"] == {
        "db": {"host": "x", "pool_size": 10}, "flags": [1, 2]}


def test_publish_values_json_strings_and_conflicts(run) -> None:  # type: ignore[no-untyped-def]
    bad = run("publish", 'a={"x": 1', "b=2", ok=False)
    assert bad.exit_code == 2 and "the value of 'a' is not valid JSON" in bad.stderr
    assert run("publish", "x=1", "x.y=2", ok=False).exit_code == 2
    assert run("get", ok=False).exit_code == 1  # nothing was published
    run("publish", "n=20", "s=hello world", "l=[1, 2]", 'o={"x": 1}', 'q="20"', "t=true",
        "v=v1.2")
    assert json.loads(run("get", "--json").stdout)["settings"] == {
        "n": 20, "s": "hello world", "l": [1, 2], "o": {"x": 1}, "q": "20", "t": True,
        "v": "v1.2"}
    run("publish", "--string", "n=20", 'o={"x": 1', "t=true")
    assert json.loads(run("get", "--json").stdout)["settings"] == {
        "n": "20", "s": "hello world", "l": [1, 2], "o": '{"x": 1', "q": "20", "t": "true",
        "v": "v1.2"}


def test_invalidate_and_status(run) -> None:  # type: ignore[no-untyped-def]
    run("publish", "a=1")
    # invalidations are numbered apart from settings versions (docs/protocol.md §9)
    assert run("invalidate", "user:1", "--prefix", "order:").stdout == (
        "published seq 1 (invalidate)\n")
    assert run("invalidate", "--all").stdout == "published seq 2 (invalidate)\n"
    status = json.loads(run("status", "--json").stdout)
    assert status["version"] == 1 and status["published"] is True
    assert status["keys"] == 1
    assert re.fullmatch("[0-9a-f]{64}", status["checksum"])
    assert status["epoch"] and status["subscribers"] == 0
    text = run("status").stdout
    assert "version:     1" in text


def test_a_namespace_never_published_is_an_error_for_get_and_rollback(  # type: ignore[no-untyped-def]
    run, namespace: str
) -> None:
    run("publish", "a=1")
    typo = f"{namespace}-typo"
    for args in (["get"], ["get", "a"], ["get", "--json"], ["rollback", "0"],
                 ["rollback", "--yes", "1"]):
        result = run(*args, "-n", typo, ok=False)
        assert (result.exit_code, result.stdout) == (1, ""), args
        assert result.stderr == (f"error: namespace {typo!r} has never been published (or "
                                 "Redis lost it): check -n or the config's namespace\n")
    assert run("history", "-n", typo).stdout == "no events\n"
    assert run("history", "-n", typo, "--json").stdout == ""
    assert "version:     - (never published)" in run("status", "-n", typo).stdout.splitlines()
    status = json.loads(run("status", "-n", typo, "--json").stdout)
    assert (status["published"], status["version"]) == (False, 0)
    assert json.loads(run("status", "--json").stdout)["published"] is True
    assert run("get", "-n", typo, ok=False).exit_code == 1  # nothing was created meanwhile


def test_errors_are_one_line_without_traceback(run, tmp_path: Path, namespace: str) -> None:  # type: ignore[no-untyped-def]
    run("publish", "a=1")
    result = run("get", "nope", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: key 'nope' not found in {namespace!r} (v1)"
    assert "Traceback" not in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("redis:\n  adr: x\n")
    result = CliRunner().invoke(cli, ["-c", str(bad), "status"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {bad}: redis.adr: unknown key"
    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "missing.yaml"), "status"])
    assert "no such config file" in result.stderr
    down = tmp_path / "down.yaml"
    down.write_text("redis:\n  addr: 127.0.0.1:1\n  password: hunter2\n")
    result = CliRunner().invoke(cli, ["-c", str(down), "status"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "hunter2" not in result.output + result.stderr


def test_tail_prints_one_line_per_applied_event(run, tmp_path: Path, namespace: str) -> None:  # type: ignore[no-untyped-def]
    run("publish", "a=1")
    cfg = tmp_path / "config.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotreload", "-c", str(cfg), "tail", "--json",
         "--max-events", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready == {"type": "ready", "namespace": namespace, "version": 1}
        run("publish", "a=2")
        run("invalidate", "k1")
        run("publish", "b=true")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a failed assertion must not leave the process behind
            proc.kill()
            proc.communicate()
    lines = [json.loads(x) for x in out.splitlines()]
    assert [(x["type"], x["version"]) for x in lines] == [("change", 2), ("invalidate", 1),
                                                         ("change", 3)]
    assert lines[0]["changes"] == [{"op": "set", "key": "a", "old": 1, "new": 2}]
    assert proc.returncode == 0, err


def test_rollback_shows_the_diff_and_needs_a_yes(run, namespace: str) -> None:  # type: ignore[no-untyped-def]
    run("publish", "a=1", "b=x")
    run("publish", "a=2", "c=true", "--delete", "b")
    diff = [f"rollback of {namespace} from v2 to the settings of v1:",
            "  a: 2 -> 1", '  b: added "x"', "  c: deleted (was true)"]
    refused = run("rollback", "1", ok=False)  # the runner's stdin is no terminal
    assert refused.exit_code == 2
    assert refused.stdout.splitlines() == diff
    assert "Error: nothing rolled back: no terminal to confirm on; pass --yes" in refused.stderr
    assert json.loads(run("get", "--json").stdout)["version"] == 2
    assert run("rollback", "-y", "1").stdout.splitlines() == [
        *diff, "published v3 (rollback to v1, 3 changes)"]
    assert run("rollback", "3").stdout.strip() == (
        "no change: the settings of v3 are already those of v3")
    wipe = run("rollback", "0", ok=False)
    assert wipe.exit_code == 2 and "a: deleted (was 1)" in wipe.stdout
    assert "published v4" in run("rollback", "0", "--yes").stdout
    assert json.loads(run("get", "--json").stdout)["settings"] == {}


def _rollback_on_a_terminal(cfg: Path, answer: str) -> subprocess.CompletedProcess[str]:
    """``hotreload rollback 1`` with a pseudo-terminal as stdin, answering ``answer``."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotreload", "-c", str(cfg), "rollback", "1"],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    os.close(slave)
    try:
        os.write(master, answer.encode() + b"\n")  # the terminal keeps the line until read
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_rollback_asks_on_a_terminal(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("publish", "a=1")
    run("publish", "a=2")
    declined = _rollback_on_a_terminal(tmp_path / "config.yaml", "n")
    assert declined.returncode == 1
    assert "  a: 2 -> 1\nPublish this as v3? [y/N]: " in declined.stdout
    assert declined.stderr == "nothing rolled back: not confirmed\n"
    assert json.loads(run("get", "--json").stdout)["version"] == 2
    accepted = _rollback_on_a_terminal(tmp_path / "config.yaml", "y")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.endswith("published v3 (rollback to v1, 1 change)\n")
    assert run("get", "a").stdout.strip() == "1"


def _hotreload(cfg: Path, *args: str, stdout: int, stderr: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hotreload", "-c", str(cfg), *args], stdout=stdout, stderr=stderr,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path,
                                                            namespace: str) -> None:
    """``hotreload history | head -1``: the pipe breaks mid-output."""
    with Publisher(REDIS_URL, namespace=namespace) as pub:
        for i in range(200):  # ~2 kB per history line: far more than a pipe holds
            pub.publish({"big": f"{i:04d}" + "x" * 1000})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"redis:\n  url: {REDIS_URL}\nnamespace: {namespace}\n")
    errors = tmp_path / "stderr"
    with errors.open("wb") as err:
        proc = _hotreload(cfg, "history", "--limit", "200", stdout=subprocess.PIPE, stderr=err)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith(b"v1 ")
            proc.stdout.close()  # what `head -1` does after its line
            assert proc.wait(timeout=30) == EXIT_STDOUT_GONE
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert errors.read_text() == ""


@pytest.mark.parametrize("args", [
    ["history"], ["get"], ["get", "a"], ["get", "--json"], ["status"], ["publish", "b=2"],
    ["invalidate", "k"], ["rollback", "--yes", "1"], ["tail"], ["--help"], ["--version"]],
    ids=" ".join)
def test_every_command_ends_quietly_when_stdout_is_already_closed(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, args: list[str]
) -> None:
    run("publish", "a=1")
    run("publish", "a=2")
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write of the command fails with EPIPE
    proc = _hotreload(tmp_path / "config.yaml", *args, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_STDOUT_GONE
    assert not [line for line in err.decode().splitlines()
                if not re.match(r"\S+ \S+ INFO hotreload\.", line)]  # only the usual logs


def test_publish_file_makes_the_namespace_exactly_the_document(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("publish", "old=1", "db.host=a")
    doc = tmp_path / "settings.yaml"
    doc.write_text("db:\n  host: b\n  pool_size: 5\nname: svc\n")
    assert "published v2 (4 changes)" in run("publish", "--file", str(doc)).stdout
    assert json.loads(run("get", "--json").stdout)["settings"] == {
        "db": {"host": "b", "pool_size": 5}, "name": "svc"}
    assert run("publish", "--file", str(doc)).stdout.strip() == "no change (v2)"
    doc.write_text("extra: true\n")
    run("publish", "--file", str(doc), "--merge")
    assert json.loads(run("get", "extra", "--json").stdout)["value"] is True
    doc.write_text("db: [unclosed\n")
    result = run("publish", "--file", str(doc), ok=False)
    assert result.exit_code == 1
    assert "invalid YAML" in result.stderr
    assert json.loads(run("get", "--json").stdout)["version"] == 3


def test_config_option_works_after_the_command_too(tmp_path: Path, namespace: str) -> None:
    cfg = tmp_path / "other.yaml"
    cfg.write_text(f"redis:\n  url: {REDIS_URL}\nnamespace: {namespace}\n")
    result = CliRunner().invoke(cli, ["status", "--json", "-c", str(cfg)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["namespace"] == namespace
    result = CliRunner().invoke(cli, ["db", "install", "--help"])
    assert "-c, --config FILE" in result.stdout


def test_a_command_prints_its_result_once_and_no_info_logs(tmp_path: Path,
                                                          namespace: str) -> None:
    """``hotreload publish`` as a user runs it: the result on stdout, nothing on stderr (the
    library's INFO line about the same publish only with --verbose)."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"redis:\n  url: {REDIS_URL}\nnamespace: {namespace}\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def hotreload(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hotreload", "-c", str(cfg), *args],
                              capture_output=True, text=True, env=env, timeout=30, check=True)

    done = hotreload("publish", "a=1")
    assert (done.stdout, done.stderr) == ("published v1 (1 change)\n", "")
    done = hotreload("invalidate", "k")
    assert (done.stdout, done.stderr) == ("published seq 1 (invalidate)\n", "")
    done = hotreload("-v", "publish", "a=2")
    assert done.stdout == "published v2 (1 change)\n"
    assert "INFO hotreload.publisher: published" in done.stderr


def test_a_corrupt_namespace_refuses_partial_publishes_and_publish_file_recovers(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, namespace: str
) -> None:
    import redis

    from hotreload.wire import keys_for

    run("publish", "a=1", "b=2")
    with redis.Redis.from_url(REDIS_URL) as raw:
        raw.hset(keys_for(namespace).meta, "version", "garbage")  # the head is unreadable
    refused = run("publish", "a=2", ok=False)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"error: cannot publish part of {namespace!r}")
    assert "--file" in refused.stderr
    doc = tmp_path / "settings.yaml"
    doc.write_text("a: 3\nb: 2\n")
    recovered = run("publish", "--file", str(doc))
    assert recovered.stdout.startswith("published v1 ")  # a new history
    assert "recovering" in recovered.stderr  # said loudly
    got = json.loads(run("get", "--json").stdout)
    assert (got["version"], got["settings"]) == (1, {"a": 3, "b": 2})
    assert "published v2 (1 change)" in run("publish", "a=4").stdout
