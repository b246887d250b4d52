"""The alert rules (monitoring/alerts.yml), checked and unit-tested by promtool, Debian's
(`make test` installs it): every alert has series that fire it and series that do not,
a summary and a description, and a runbook section in docs/operations.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from reel import PROJECT_ROOT
from reel.settings import Settings

MONITORING = PROJECT_ROOT / "monitoring"
RULES = yaml.safe_load((MONITORING / "alerts.yml").read_text())
ALERTS = {r["alert"]: r for g in RULES["groups"] for r in g["rules"] if "alert" in r}
CASES = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool is not installed (make test installs Debian's prometheus)"
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", "alerts.yml", cwd=MONITORING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(ALERTS)} rules found" in done.stdout


def test_every_alert_fires_on_its_series_and_not_on_the_others(tmp_path: Path) -> None:
    # The labels are the test's; the annotations (long prose) are left out of the copy.
    bare: dict[str, Any] = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    for group in bare["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(bare))
    shutil.copy(MONITORING / "alerts_test.yml", tmp_path)
    done = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_case_that_fires_it_and_one_that_does_not() -> None:
    checks = [c for case in CASES for c in case["alert_rule_test"]]
    for name in ALERTS:
        mine = [c for c in checks if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: nothing makes it fire"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: nothing shows it staying quiet"
    assert {c["alertname"] for c in checks} <= set(ALERTS), "a case names an alert that does not exist"


@pytest.mark.parametrize("name", list(ALERTS))
def test_every_alert_says_what_to_do_and_has_a_runbook(name: str) -> None:
    rule = ALERTS[name]
    assert rule["labels"]["severity"] in ("warning", "critical")
    notes = rule["annotations"]
    assert notes["summary"] and len(notes["description"]) > 80
    anchor = f"docs/operations.md#{name.lower()}"
    assert anchor in notes["description"], f"{name}'s description does not point at its runbook"
    runbook = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    assert re.search(rf"^### {name}$", runbook, re.M), f"docs/operations.md has no section '### {name}'"


def test_the_backlog_alerts_target_is_the_scalings() -> None:
    expr = ALERTS["ReelBacklogAboveTarget"]["expr"]
    threshold = float(re.search(r"\)\s*>\s*([\d.]+)\s*$", expr).group(1))  # type: ignore[union-attr]
    assert threshold == Settings().autoscale_target_s
    hpas = list(yaml.safe_load_all((PROJECT_ROOT / "k8s" / "components" / "hpa" / "hpa.yaml").read_text()))
    targets = {
        h["metadata"]["name"]: float(m["external"]["target"]["averageValue"])
        for h in hpas
        for m in h["spec"]["metrics"]
        if m["external"]["metric"]["name"] == "reel_backlog_media_seconds"
    }
    assert targets and set(targets.values()) == {threshold}, targets
