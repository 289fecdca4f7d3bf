"""The alert rules and the Grafana dashboard of docs/ops/ name only metrics the daemon exports,
in expressions a PromQL parser accepts, and point at runbooks that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from hotreload.daemon.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "docs" / "ops"
RULES = yaml.safe_load((OPS / "alerts.yaml").read_text(encoding="utf-8"))
DASHBOARD = json.loads((OPS / "grafana-dashboard.json").read_text(encoding="utf-8"))
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
#: Grafana's variables, replaced by what they stand for before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*"}
#: What PromQL itself provides.
BUILTIN_SERIES = {"up"}

_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
             "histogram": ("_bucket", "_sum", "_count", "_created")}


def exported_series() -> set[str]:
    """Every series name the daemon's registry exposes (counter ``_total`` and so on)."""
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def series_in(expr: str) -> set[str]:
    """The metric names an expression selects (it must parse)."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        pytest.fail(f"not PromQL: {expr!r}: {exc}")
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
        return True

    promql_parser.walk(tree, visit)
    return names


def rules() -> list[dict[str, Any]]:
    return [rule for group in RULES["groups"] for rule in group["rules"]]


def test_the_rules_file_is_a_prometheus_rules_file() -> None:
    assert set(RULES) == {"groups"}
    names = [g["name"] for g in RULES["groups"]]
    assert len(names) == len(set(names))
    alerts = [r["alert"] for r in rules()]
    assert len(alerts) == len(set(alerts))
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Hotreload[A-Z][A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]


@pytest.mark.parametrize("rule", rules(), ids=[r["alert"] for r in rules()])
def test_each_alert_names_only_exported_metrics(rule: dict[str, Any]) -> None:
    used = series_in(rule["expr"])
    assert used, rule["expr"]
    assert used <= exported_series() | BUILTIN_SERIES, used - exported_series()


def test_the_alerts_cover_what_operators_page_on() -> None:
    by_metric: dict[str, set[str]] = {}
    for rule in rules():
        for name in series_in(rule["expr"]):
            by_metric.setdefault(name, set()).add(rule["alert"])
    assert {"HotreloadLeaderMissing", "HotreloadLeaderFlapping"} <= by_metric["hotreload_leader"]
    assert "HotreloadSettingsRejected" in by_metric["hotreload_instances_rejected"]
    assert "HotreloadSourceRejected" in by_metric["hotreload_rejections_total"]
    assert "HotreloadSubscribersStale" in by_metric["hotreload_instances_behind"]
    assert "HotreloadRedisUnreachable" in by_metric["hotreload_redis_up"]
    assert "HotreloadPublishErrors" in by_metric["hotreload_publish_errors_total"]
    stale = next(r for r in rules() if r["alert"] == "HotreloadSubscribersStale")
    assert stale["for"] == "5m"  # behind for more than N minutes, not for a moment


def _slug(heading: str) -> str:
    """The anchor mkdocs (toc) gives a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[\s]+", "-", text)


def test_every_runbook_link_points_at_a_section_of_operations_md() -> None:
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", OPERATIONS, flags=re.M)}
    for rule in rules():
        runbook = rule["annotations"].get("runbook")
        if runbook is None:
            continue
        page, _, anchor = runbook.partition("#")
        assert page == "docs/operations.md", runbook
        assert anchor in anchors, (rule["alert"], anchor, sorted(anchors))


def dashboard_exprs() -> list[str]:
    exprs = []
    for panel in DASHBOARD["panels"]:
        exprs += [t["expr"] for t in panel.get("targets", [])]
    return exprs


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    assert DASHBOARD["uid"] == "hotreload" and DASHBOARD["schemaVersion"] >= 36
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
    series_in(variables["namespace"]["definition"].removeprefix("label_values(")
              .rsplit(",", 1)[0])


@pytest.mark.parametrize("expr", dashboard_exprs())
def test_each_panel_names_only_exported_metrics(expr: str) -> None:
    used = series_in(expr)
    assert used and used <= exported_series(), used - exported_series()


def test_the_dashboard_shows_every_metric() -> None:
    shown = set().union(*(series_in(e) for e in dashboard_exprs()))
    families = {name.removesuffix("_total").removesuffix("_bucket") for name in shown}
    assert families == {f.name for f in Metrics().registry.collect()}


def test_a_metric_that_does_not_exist_is_caught() -> None:
    assert series_in('sum(rate(hotreload_nope_total{a="b"}[5m])) > 0') == {"hotreload_nope_total"}
    assert "hotreload_nope_total" not in exported_series()
