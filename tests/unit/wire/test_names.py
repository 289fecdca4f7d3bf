"""names.py: prefixes, namespaces and keys (protocol §1, §4)."""

from __future__ import annotations

import pytest

from hotreload.errors import ProtocolError
from hotreload.wire import check_name, keys_for


def test_every_key_of_a_namespace_shares_its_hash_tag() -> None:
    k = keys_for("app", "hr")
    names = [k.meta, k.leaves, k.checkpoint, k.log, k.config_channel, k.inv, k.inv_log,
             k.inv_channel, k.presence, k.presence_record("h:1:x"), k.cache("users") + "1"]
    assert all(n.startswith("hr:{app}:") for n in names)
    assert (k.meta, k.log, k.inv_log, k.inv_channel) == (
        "hr:{app}:meta", "hr:{app}:changes", "hr:{app}:invlog", "hr:{app}:invalidate")


@pytest.mark.parametrize("bad", ["", "a b", "a:b", "{x}", "x" * 129, "é", "app\n", "\napp"])
def test_bad_names_are_rejected(bad: str) -> None:
    with pytest.raises(ProtocolError, match="invalid namespace") as info:
        keys_for(bad)
    assert info.value.reason == "field"
    with pytest.raises(ProtocolError, match="invalid prefix"):
        keys_for("app", bad)
    with pytest.raises(ProtocolError):
        check_name(bad, "namespace")
