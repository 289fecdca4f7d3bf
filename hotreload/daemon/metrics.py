"""The daemon's Prometheus metrics, in a registry of its own (never the global one).

Every metric is documented in ``docs/daemon.md``; their names are part of the public interface.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Publish latency buckets (seconds): sub-millisecond up to a long Redis outage.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)


class Metrics:
    """The metrics of one daemon; `render` gives the Prometheus text exposition."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_published = Counter(
            "hotreload_events_published", "Events published to Redis, by source and kind.",
            ["source", "kind"], registry=r,
        )
        self.rejections = Counter(
            "hotreload_rejections", "Documents or payloads rejected by a source, by reason.",
            ["source", "reason"], registry=r,
        )
        self.redis_reconnects = Counter(
            "hotreload_redis_reconnects", "Times Redis became reachable again after an outage.",
            registry=r,
        )
        self.publish_errors = Counter(
            "hotreload_publish_errors", "Publish attempts that failed (Redis down or error).",
            registry=r,
        )
        self.redis_up = Gauge(
            "hotreload_redis_up", "1 while Redis is reachable, else 0.", registry=r,
        )
        self.leader = Gauge(
            "hotreload_leader", "1 while this daemon is the leader (publishes), 0 on standby.",
            registry=r,
        )
        self.namespace_version = Gauge(
            "hotreload_namespace_version", "The current published version of each namespace.",
            ["namespace"], registry=r,
        )
        self.source_up = Gauge(
            "hotreload_source_up",
            "1 while a source runs and its last read was accepted, else 0.",
            ["source"], registry=r,
        )
        self.publish_latency = Histogram(
            "hotreload_publish_latency_seconds",
            "From a source reporting a change to Redis acknowledging its publish.",
            buckets=LATENCY_BUCKETS, registry=r,
        )

        # Subscribers, from their presence records (hotreload.daemon.presence).
        self.instances = Gauge(
            "hotreload_instances",
            "Live subscriber instances of a namespace (unexpired presence records).",
            ["namespace"], registry=r,
        )
        self.instances_behind = Gauge(
            "hotreload_instances_behind",
            "Instances reporting a version older than the head they had time to apply.",
            ["namespace"], registry=r,
        )
        self.instances_rejected = Gauge(
            "hotreload_instances_rejected",
            "Instances whose model rejected the namespace's settings (they keep the last good).",
            ["namespace"], registry=r,
        )
        self.instances_link_down = Gauge(
            "hotreload_instances_link_down",
            "Instances reporting their link not up (down, or stale: resyncing or unconfirmed).",
            ["namespace"], registry=r,
        )
        self.instances_max_lag = Gauge(
            "hotreload_instances_max_lag",
            "The most versions any instance of the head's epoch is behind the head.",
            ["namespace"], registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
