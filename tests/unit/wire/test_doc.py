"""docs/protocol.md (version 2): its worked examples are right.

(The protocol-1 tests of hotreload.protocol stay in tests/unit/test_protocol.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hotreload.wire import (
    Digester,
    LeafSet,
    canary_bucket,
    decode_event,
    encode_event,
)

DOC = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text(encoding="utf-8")
KEY = b"example-key"
BEFORE = {"db.host": '"db1"', "db.pool_size": "10", "legacy.mode": '"compat"'}


def blocks(tag: str) -> list[str]:
    return re.findall(rf"<!-- {tag} -->\s*```json\n(.*?)```", DOC, flags=re.S)


def test_every_example_event_is_valid_and_round_trips() -> None:
    found = blocks("example-event")
    assert len(found) == 2
    for block in found:
        env = decode_event(block.encode(), namespace="app")
        assert json.loads(encode_event(env)) == json.loads(block)


def test_the_config_example_applies_to_the_state_stated_before_it() -> None:
    block = blocks("example-event")[0]
    env = decode_event(block.encode())
    d = Digester()
    before = d.checksum_of(BEFORE)
    assert f"`{before}`" in DOC  # the doc states the checksum of the state before
    leaves = LeafSet(BEFORE)
    leaves.apply(env.changes)
    assert d.advance(before, env.changes) == env.checksum == d.checksum_of(leaves)
    assert dict(leaves) == {"db.host": '"db1"', "db.pool_size": "20", "feature.search": "true"}


def test_the_signed_example_verifies_with_example_key() -> None:
    (block,) = blocks("example-signed")
    env = decode_event(block.strip().encode(), key=KEY)
    d = Digester(KEY)
    before = d.checksum_of(BEFORE)
    assert f"`{before}`" in DOC
    assert d.advance(before, env.changes) == env.checksum
    unsigned = decode_event(blocks("example-event")[0].encode())
    assert env.changes == unsigned.changes and env.version == unsigned.version


def test_the_checksum_table() -> None:
    leaves = {"db.pool_size": "20", "feature": "true"}
    row = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"\| (digest of `db.pool_size`|digest of `feature`|checksum) \| `([0-9a-f]{64})` \| "
        r"`([0-9a-f]{64})` \|", DOC)}
    assert len(row) == 3
    for i, digester in enumerate((Digester(), Digester(KEY))):
        assert row["checksum"][i] == digester.checksum_of(leaves)
        assert row["digest of `db.pool_size`"][i] == f"{digester.leaf('db.pool_size', '20'):064x}"
        assert row["digest of `feature`"][i] == f"{digester.leaf('feature', 'true'):064x}"


def test_the_canary_bucket_example() -> None:
    assert "the canary `c-42` puts the instance `api-1`\nin bucket 10" in DOC
    assert canary_bucket("c-42", "api-1") == 10
