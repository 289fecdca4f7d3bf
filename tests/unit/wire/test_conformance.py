"""The conformance vectors (conformance/, protocol §14): every one passes, they are exactly
what conformance/generate.py writes, and the runner notices a wrong expectation."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from hotreload.wire.conformance import main, run_case, run_directory

VECTORS = Path(__file__).resolve().parents[3] / "conformance"


def test_every_vector_passes() -> None:
    results = run_directory(VECTORS)
    assert len(results) > 100
    failures = [(r.file, r.name, r.failures) for r in results if not r.ok]
    assert failures == []


def test_every_case_type_and_reason_is_covered() -> None:
    types: set[str] = set()
    reasons: set[str] = set()
    for path in VECTORS.glob("*.json"):
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            types.add(case["type"])
            for step in [*case.get("steps", []), case]:
                reason = step.get("expect", {}).get("reason")
                if reason:
                    reasons.add(reason)
    assert types == {"checksum", "follow", "invalidate", "canary", "head", "checkpoint",
                     "invalidation-head", "legacy"}
    assert reasons >= {"size", "signature", "json", "protocol", "kind", "field", "range", "key",
                       "text", "namespace", "older-epoch", "digest", "checksum", "epoch", "old",
                       "prefix", "gap", "reset", "created"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_generate",
                                                  VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_vectors_are_what_the_generator_writes(tmp_path: Path) -> None:
    assert load_generator().main(["generate.py", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert written == sorted(p.name for p in VECTORS.glob("*.json"))
    for name in written:
        assert (tmp_path / name).read_text(encoding="utf-8") == (
            VECTORS / name).read_text(encoding="utf-8"), f"{name}: run conformance/generate.py"


def test_the_runner_reports_a_wrong_expectation(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(VECTORS / "follow-apply.json", tmp_path)
    assert main([str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "follow-apply.json").read_text(encoding="utf-8"))
    doc["cases"][0]["steps"][0]["state"]["checksum"] = "0" * 64
    doc["cases"][1]["steps"][0]["expect"]["reason"] = "gap"
    (tmp_path / "follow-apply.json").write_text(json.dumps(doc), encoding="utf-8")
    assert main([str(tmp_path), "-v"]) == 1
    out = capsys.readouterr().out
    assert "FAIL follow-apply.json: normal apply and duplicates" in out
    assert "checksum is" in out and "want load (gap)" in out
    assert f"{len(doc['cases']) - 2} of {len(doc['cases'])} cases passed" in out


def test_the_runner_survives_malformed_cases(tmp_path: Path) -> None:
    assert run_case({"name": "x", "type": "nope"}).failures == ["unknown case type 'nope'"]
    assert run_case({"name": "x", "type": "follow"}).failures[0].startswith("malformed case")
    (tmp_path / "v.json").write_text('{"format": 9, "cases": []}', encoding="utf-8")
    assert run_directory(tmp_path)[0].failures == ["unknown format 9"]
    assert main([str(tmp_path / "empty")]) == 2
