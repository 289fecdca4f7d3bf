"""The cluster transport's pure parts: where a subscription listens, what a reply counts."""

from __future__ import annotations

from redis.asyncio.cluster import ClusterNode

from hotreload.transport._cluster_subscription import _role, choose_node
from hotreload.transport.cluster import _count


def test_a_subscription_listens_on_a_replica_and_falls_back_to_the_primary() -> None:
    primary, r1, r2 = (ClusterNode("127.0.0.1", p) for p in (7000, 7001, 7002))
    nodes = [primary, r1, r2]
    assert all(choose_node(nodes, replicas=True) in (r1, r2) for _ in range(20))
    assert all(choose_node(nodes, replicas=True, avoid=r1.name) is r2 for _ in range(20))
    assert choose_node([primary, r1], replicas=True, avoid=r1.name) is primary  # none left
    assert choose_node([primary], replicas=True) is primary
    assert choose_node(nodes, replicas=False) is primary


def test_role_and_listener_replies() -> None:
    assert _role([b"master", 10, []]) == (b"master",)
    assert _role([b"slave", b"10.0.0.1", 7000, b"connected", 5]) == (b"slave", b"10.0.0.1",
                                                                       7000)
    assert _role(["slave", "10.0.0.1", "7000", "sync", -1]) == (b"slave", "10.0.0.1", 7000)
    assert _count([b"ch", 3]) == 3
    assert _count([(b"ch", 2)]) == 2
    assert _count({"node": [b"ch", 4]}) == 4
    assert _count([]) == 0
