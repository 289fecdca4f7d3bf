"""`replace` (the whole truth: the daemon's reconcile, `publish --file`) checks the server's head
before concluding "no change": a namespace lost, rolled back or damaged since this publisher
last wrote it is recovered at the next replace, even of the same document."""

from __future__ import annotations

from hotreload.wire import keys_for
from tests.unit.memory_fixtures import Pods, eventually

KEYS = keys_for("app")


async def test_a_lost_namespace_is_republished_by_the_same_replace(pods: Pods) -> None:
    pub = pods.publisher()
    first = await pub.replace({"a": 1, "b": [2]})
    sub = await pods.subscriber()
    pods.server.lose_data()  # Redis restarted without persistence
    again = await pub.replace({"a": 1, "b": [2]})
    assert again.changed and again.version == 1 and again.recovered
    assert again.epoch != first.epoch
    await eventually(lambda: sub.epoch == again.epoch, what="the subscriber followed")
    late = await pods.subscriber()  # a pod that starts now gets the settings
    assert late.as_dict() == {"a": 1, "b": [2]}


async def test_a_rolled_back_namespace_is_recovered_by_the_same_replace(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.replace({"a": 1})
    saved = {k: pods.server.raw(k) for k in (KEYS.meta, KEYS.leaves)}
    await pub.replace({"a": 2})
    for key, value in saved.items():
        pods.server.put(key, value)  # a restored backup: v1 again
    again = await pub.replace({"a": 2})
    assert again.changed and again.recovered and again.version == 1


async def test_an_unchanged_healthy_namespace_publishes_nothing(pods: Pods) -> None:
    pub = pods.publisher()
    first = await pub.replace({"a": 1})
    again = await pub.replace({"a": 1})
    assert not again.changed and again.version == first.version == 1


async def test_an_empty_document_for_a_namespace_never_published_is_no_change(
        pods: Pods) -> None:
    # The daemon replaces a namespace whose only PostgreSQL row was rejected with {}: that
    # is "nothing to publish", not 50 lost races and a ConflictError.
    pub = pods.publisher()
    result = await pub.replace({})
    assert not result.changed and result.version == 0
    assert pods.server.raw(KEYS.meta) is None  # and nothing was written
    again = await pub.replace({})
    assert not again.changed and again.version == 0
