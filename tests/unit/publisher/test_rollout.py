"""Who runs which version (presence records), waiting for a rollout, and canaries."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from hotreload.errors import HistoryError, InputError, RolloutIncomplete
from hotreload.publisher.rollout import judge
from hotreload.publisher.targets import describe_target, parse_target
from hotreload.wire import CanaryTarget
from hotreload.wire.presence import PresenceRecord
from tests.unit.memory_fixtures import Pods, eventually


class Strict(BaseModel):
    n: int = 0


def record(name: str, version: int, *, epoch: str = "1-0000000000000000",
           link: str = "up", rejected: dict[str, object] | None = None,
           received: int | None = None, service: str = "api") -> PresenceRecord:
    return PresenceRecord(instance=name, service=service, version=version, epoch=epoch,
                          received_version=version if received is None else received,
                          link=link, rejected=rejected)  # type: ignore[arg-type]


def test_judge_names_each_laggard_and_why() -> None:
    e = "1-0000000000000000"
    rollout = judge("app", [
        record("a", 7), record("b", 8),
        record("c", 6, rejected={"version": 7, "reason": "n: bad"}),
        record("d", 5, link="down"), record("e", 6, received=7),
        record("f", 3, epoch="2-0000000000000000"), record("g", 1, service="web"),
    ], 7, e, service="api")
    assert [r.instance for r in rollout.applied] == ["a", "b"]
    reasons = {p.instance.instance: p.reason for p in rollout.pending}
    assert reasons["c"].startswith("rejected v7 by its model: n: bad")
    assert reasons["d"].startswith("disconnected")
    assert reasons["e"] == "behind: at v6 (received v7, not applied)"
    assert reasons["f"].startswith("on another history")
    assert "g" not in reasons and not rollout.complete
    with pytest.raises(RolloutIncomplete, match="applied by 2 of 6 instances"):
        rollout.raise_for_incomplete()


@pytest.mark.parametrize(("text", "target"), [
    ("service=api", CanaryTarget(service="api")),
    ("service=api,instance=api-7*", CanaryTarget(service="api", instance="api-7*")),
    ("10%", CanaryTarget(percent=10.0)),
    ("service=api, 2.5%", CanaryTarget(service="api", percent=2.5)),
])
def test_canary_targets_parse_and_print(text: str, target: CanaryTarget) -> None:
    assert parse_target(text) == target
    assert parse_target(describe_target(target)) == target


@pytest.mark.parametrize("text", ["", "colour=red", "101%", "service=a,service=b", "x%",
                                  "service="])
def test_bad_canary_targets_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        parse_target(text)


async def test_wait_applied_returns_when_every_subscriber_reports(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 1})
    subs = [await pods.subscriber(service=f"svc{i % 2}") for i in range(3)]
    result = await pub.publish({"n": 2}, ack=True)
    rollout = await pub.wait_applied(result.version, timeout=5)
    assert rollout.complete and len(rollout.applied) == 3
    instances = await pub.instances()
    assert {r.instance for r in instances} == {s.instance for s in subs}
    assert all(r.version == 2 and r.link == "up" and r.applied_at > 0 for r in instances)
    assert [r.instance for r in await pub.instances(service="svc1")] == [subs[1].instance]


async def test_wait_applied_reports_a_subscriber_whose_model_rejects_it(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 1})
    await pods.subscriber()
    strict = await pods.subscriber(model=Strict)
    result = await pub.publish({"n": "text"}, ack=True)
    rollout = await pub.wait_applied(result.version, timeout=3)
    assert not rollout.complete
    (pending,) = rollout.pending
    assert pending.instance.instance == strict.instance
    assert pending.reason.startswith(f"rejected v{result.version} by its model")


async def test_a_canary_reaches_its_targets_only_until_promoted(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"db": {"pool": 10}, "flag": False})
    api = [await pods.subscriber(service="api") for _ in range(2)]
    web = await pods.subscriber(service="web")
    started = await pub.canary({"db.pool": 50}, target="service=api", canary_id="c1", ack=True)
    await eventually(lambda: all(s.get("db.pool") == 50 for s in api), what="the canary")
    assert web.get("db.pool") == 10 and web.version == started.version
    assert {r.instance: r.canary for r in await pub.instances()} == {
        api[0].instance: "c1", api[1].instance: "c1", web.instance: None}
    late = await pods.subscriber(service="api")  # an instance (re)starting mid-canary
    assert late.get("db.pool") == 50
    # the namespace itself moves on: canary instances keep the canary's keys on top
    moved = await pub.publish({"flag": True})
    await eventually(lambda: all(s.version == moved.version for s in (*api, web, late)),
                     what="the base change")
    assert web.get("flag") is True and api[0].get("flag") is True and api[0].get("db.pool") == 50
    promoted = await pub.promote(ack=True)
    await eventually(lambda: all(s.version == promoted.version for s in (*api, web, late)),
                     what="the promote")
    assert all(s.get("db.pool") == 50 for s in (*api, web, late))
    assert all(r.canary is None for r in await pub.instances())
    with pytest.raises(HistoryError, match="no canary"):
        await pub.abort()


async def test_aborting_a_canary_returns_its_instances(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"n": 1})
    api = await pods.subscriber(service="api")
    web = await pods.subscriber(service="web")
    await pub.canary({"n": 2}, target="service=api")
    await eventually(lambda: api.get("n") == 2, what="the canary")
    aborted = await pub.abort()
    await eventually(lambda: api.get("n") == 1 and api.version == aborted.version,
                     what="the abort")
    assert web.get("n") == 1


async def test_plan_and_diff_show_changes_without_publishing(pods: Pods) -> None:
    pub = pods.publisher()
    await pub.publish({"a": 1, "b": {"c": 2}})
    await pub.publish({"a": 5}, ["b"])
    planned = await pub.plan({"a": 6, "z": True})
    assert [(c.op, c.key, c.old, c.new) for c in planned] == [
        ("set", "a", 5, 6), ("set", "z", pytest.importorskip("hotreload").MISSING, True)]
    assert (await pub.snapshot()).version == 2  # nothing was sent
    diff = await pub.diff(1, 2)
    assert [(c.op, c.key) for c in diff] == [("set", "a"), ("delete", "b.c")]
