"""hotreload.wire's public names: exactly its curated, sorted __all__; no import beyond
hotreload.errors."""

from __future__ import annotations

import ast
from pathlib import Path

import hotreload.wire as wire

PACKAGE = Path(wire.__file__).resolve().parent


def test_all_is_sorted_complete_and_importable() -> None:
    names = wire.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    for name in names:
        assert getattr(wire, name) is not None
    public = {n for n in vars(wire) if not n.startswith("_")}
    modules = {"canary", "conformance", "digest", "epochs", "events", "follow", "heads", "leaves",
               "legacy", "names", "presence", "values"}
    assert public - modules == set(names)


def test_the_documented_interfaces_exist() -> None:
    for name in ["MISSING", "PROTOCOL_VERSION", "MAX_SAFE_INT", "EMPTY_CHECKSUM", "LeafChange",
                 "Change", "Canary", "Envelope", "encode_event", "decode_event", "Digester",
                 "Head", "decode_head", "encode_head", "Checkpoint", "decode_checkpoint",
                 "encode_checkpoint", "InvalidationHead", "decode_invalidation_head",
                 "Position", "Verdict", "Decision", "on_event", "on_head", "on_load",
                 "on_invalidation", "new_epoch", "epoch_ms", "compare_epochs", "flatten",
                 "unflatten", "diff_texts", "apply_leaf_changes", "check_prefix_free", "loads",
                 "leaf_text", "check_json_value", "check_key", "texts_equal", "fold",
                 "split_signature", "check_name", "keys_for", "legacy_keys_for"]:
        assert name in wire.__all__, name
    assert wire.PROTOCOL_VERSION == 2 and wire.MAX_SAFE_INT == 2**53 - 1


def test_wire_imports_nothing_of_hotreload_but_errors() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 2:
                    assert module == "errors", (path.name, module)
                elif node.level == 0:
                    assert not module.startswith("hotreload"), (path.name, module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("hotreload") for a in node.names), path.name
