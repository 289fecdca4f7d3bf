"""The CLI against the real Redis: through click's runner, and `tail` as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hotreload.cli import cli
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
    assert run("publish", "db.pool_size=10").stdout.strip() == "no change"
    assert "published v2" in run("publish", "db.pool_size=20", "--delete", "flags").stdout
    assert run("get", "db.pool_size").stdout.strip() == "20"
    assert run("get", "db.host").stdout.strip() == "x"
    got = json.loads(run("get", "--json").stdout)
    assert got["version"] == 2
    assert got["settings"] == {"db": {"host": "x", "pool_size": 20}}
    assert json.loads(run("get", "db", "--json").stdout)["value"] == {"host": "x",
                                                                       "pool_size": 20}
    hist = run("history").stdout.splitlines()
    assert hist[0].startswith("v1 ") and "db.pool_size: (absent) -> 10" in hist[0]
    assert "db.pool_size: 10 -> 20" in hist[1] and "flags: deleted" in hist[1]
    assert [json.loads(x)["version"] for x in run("history", "--json").stdout.splitlines()] \
        == [1, 2]
    assert "published v3 (rollback to v1" in run("rollback", "1").stdout
    assert json.loads(run("get", "--json").stdout)["settings"] == {
        "db": {"host": "x", "pool_size": 10}, "flags": [1, 2]}


def test_invalidate_and_status(run) -> None:  # type: ignore[no-untyped-def]
    run("publish", "a=1")
    assert "published v2 (invalidate)" in run("invalidate", "user:1", "--prefix", "order:").stdout
    status = json.loads(run("status", "--json").stdout)
    assert status["version"] == 2
    assert status["keys"] == 1
    assert status["checksum"].startswith("sha256:")
    assert status["subscribers"] == 0
    text = run("status").stdout
    assert "version:     2" in text


def test_errors_are_one_line_without_traceback(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("get", "nope", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: key 'nope' not found")
    assert "Traceback" not in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("redis:\n  adr: x\n")
    result = CliRunner().invoke(cli, ["-c", str(bad), "status"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {bad}: unknown key 'redis.adr'"
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
    assert [(x["type"], x["version"]) for x in lines] == [("change", 2), ("invalidate", 3),
                                                         ("change", 4)]
    assert lines[0]["changes"] == [{"op": "set", "key": "a", "old": 1, "new": 2}]
    assert proc.returncode == 0, err


def test_publish_file_makes_the_namespace_exactly_the_document(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("publish", "old=1", "db.host=a")
    doc = tmp_path / "settings.yaml"
    doc.write_text("db:\n  host: b\n  pool_size: 5\nname: svc\n")
    assert "published v2 (4 changes)" in run("publish", "--file", str(doc)).stdout
    assert json.loads(run("get", "--json").stdout)["settings"] == {
        "db": {"host": "b", "pool_size": 5}, "name": "svc"}
    assert run("publish", "--file", str(doc)).stdout.strip() == "no change"
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
    assert (done.stdout, done.stderr) == ("published v2 (invalidate)\n", "")
    done = hotreload("-v", "publish", "a=2")
    assert done.stdout == "published v3 (1 change)\n"
    assert "INFO hotreload.publisher: published" in done.stderr
