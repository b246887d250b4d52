"""The dashboards and alerts as every overlay ships them: generated from monitoring/ and
current, the PrometheusRule holding exactly monitoring/alerts.yml, the dashboards in a
ConfigMap Grafana's sidecar picks up, and every query naming only variables its
dashboard defines (or Grafana's own)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from monitoring import generate
from monitoring.dashboards import DASHBOARDS
from tests.k8s.render import OVERLAYS, build, of

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}


def test_the_generated_dashboards_and_rule_are_current() -> None:
    assert generate.stale() == [], "run `python -m monitoring`"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_ships_the_rules_and_the_dashboards(overlay: str) -> None:
    docs = build(overlay)
    (rule,) = of(docs, "PrometheusRule").values()
    assert rule["metadata"]["namespace"] == "reel"
    assert rule["spec"] == yaml.safe_load((generate.MONITORING / "alerts.yml").read_text())
    boards = of(docs, "ConfigMap")["reel-dashboards"]
    assert boards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert sorted(boards["data"]) == sorted(f"{name}.json" for name in DASHBOARDS)
    sources = yaml.safe_load(of(docs, "ConfigMap")["reel-grafana-datasources"]["data"]["datasources.yaml"])
    assert {d["uid"] for d in sources["datasources"]} == {"reel-postgres"}


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_query_names_only_variables_its_dashboard_defines(name: str) -> None:
    board = json.loads((generate.OUT / "dashboards" / f"{name}.json").read_text())
    defined = {v["name"] for v in board["templating"]["list"]} | GRAFANA_BUILTINS
    assert board["uid"].startswith("reel-") and board["panels"]
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            query = target.get("expr") or target["rawSql"]
            used = set(re.findall(r"\$\{?(\w+)", query))
            assert used <= defined, f"{panel['title']}: {used - defined} undefined"
            if "expr" in target:
                assert panel["datasource"]["uid"] == "${datasource}"
