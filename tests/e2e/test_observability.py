"""The dashboards and alerts against a real Prometheus (Debian's) scraping the e2e fleet
with the scrape config and rules the repo ships: a video that completes and one that
fails go through, then every panel query of every dashboard runs through Prometheus's
HTTP API with its variables substituted as Grafana does, every alert expression is
evaluated, and the Video dashboard's SQL runs against the tracker's database.

The fleet here is fixed; a local autoscaler runs beside it so the scaling panels read a
real one (its counts are written but the supervisor does not follow them)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from devstack.procs import free_port
from reel import PROJECT_ROOT, replicas
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from tests.e2e.conftest import E2E_ENV

pytestmark = pytest.mark.usefixtures("fleet")
BOARDS = PROJECT_ROOT / "k8s" / "components" / "observability" / "dashboards"
ALERTS = yaml.safe_load((PROJECT_ROOT / "monitoring" / "alerts.yml").read_text())
SCRAPE_S = 5  # monitoring/prometheus.yml's scrape_interval
# Every panel that must show data after one completed and one failed video (fixed before
# the run). The HPA queries of "Replicas" read kube-state-metrics, absent here; the
# panel's local-autoscaler queries feed it.
MUST_SHOW = {
    "reel-pipeline": [
        "Videos by state",
        "Throughput",
        "End-to-end latency",
        "Failures by kind",
        "Oldest unfinished video",
        "Lateness",
    ],
    "reel-stages": [
        "In flight",
        "Task duration",
        "Task duration distribution",
        "Time per step, queueing included",
        "Units by outcome",
        "Attempts per completed unit",
        "Hand-backs by cause",
        "Dead letters",
        "Storage retries",
        "Upload parts",
        "Stalled partitions",
    ],
    "reel-scaling": [
        "Lag",
        "Backlog",
        "Group members",
        "Backlog per member",
        "Replicas: desired and current",
        "Autoscaler decisions",
    ],
}


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def instant(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def wait_for(self, expr: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.instant(expr):
            assert time.monotonic() < deadline, f"Prometheus never saw {expr}"
            time.sleep(1)


@pytest.fixture(scope="module")
def prometheus(
    e2e_settings: Settings, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (make test installs Debian's)"
    config = e2e_settings.home / "prometheus" / "prometheus.yml"
    assert config.read_text() == (PROJECT_ROOT / "monitoring" / "prometheus.yml").read_text()  # the shipped one
    port = free_port()
    logs = tmp_path_factory.mktemp("prometheus")
    with open(logs / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={logs / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    autoscaler_env = {**os.environ, **stack_env, **E2E_ENV, "REEL_AUTOSCALE": "1", "REEL_AUTOSCALE_INTERVAL_S": "2"}
    with open(logs / "autoscaler.log", "wb") as log:
        autoscaler = subprocess.Popen(
            [sys.executable, "-m", "devstack.autoscaler"],
            cwd=PROJECT_ROOT,
            env=autoscaler_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                prom.get("/api/v1/status/buildinfo")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (logs / "prometheus.log").read_text()
                time.sleep(0.5)
        yield prom
    finally:
        for p in (autoscaler, proc):
            p.terminate()
            p.wait(timeout=30)
        replicas.clear(e2e_settings.home)  # its counts are not the fixed fleet's


@pytest.fixture(scope="module")
def run(
    prometheus: Prometheus, e2e_settings: Settings, bunny: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One video completed and one failed (not a video at all), seen by Prometheus."""
    # Every process of the fleet scraped (the tracker, the autoscaler and each worker slot).
    prometheus.wait_for('count(up{job="reel"} == 1) >= 7')
    started = time.time()
    storage = Storage.from_settings(e2e_settings)
    bad = tmp_path_factory.mktemp("obs") / "notes.mp4"
    bad.write_bytes(b"these are words, not a video\n" * 50)
    good_sub = submit(e2e_settings, storage, bunny, "tiny", request_id=str(uuid.uuid4()))
    bad_sub = submit(e2e_settings, storage, bad, "tiny", request_id=str(uuid.uuid4()))
    good = wait(e2e_settings, good_sub.video_id, good_sub.submitted_ms, timeout=300)
    failed = wait(e2e_settings, bad_sub.video_id, bad_sub.submitted_ms, timeout=300)
    assert good["topic"] == "video.completed" and failed["topic"] == "video.failed"
    # The tracker's counters and gauges after both, scraped.
    prometheus.wait_for('sum(increase(reel_video_failures_total{kind="bad_input"}[5m])) > 0')
    prometheus.wait_for("sum(increase(reel_completed_media_seconds_total[5m])) > 0")
    prometheus.wait_for("sum(reel_autoscaler_decisions_total) > 0")
    time.sleep(2 * SCRAPE_S)  # the gauges once more after the last event
    return {"good": good, "failed": failed, "start": started - 60, "end": time.time()}


def nice(seconds: float) -> int:
    """Grafana's rounding of a computed interval to a readable step (its roundInterval)."""
    for step in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600):
        if seconds <= step:
            return step
    return 3600


def grafana_range(start: float, end: float, max_points: int = 1000) -> dict[str, str]:
    """$__interval, $__rate_interval and $__range as Grafana computes them for a panel
    of max_points over [start, end], with the datasource's scrape interval as its floor."""
    interval = max(SCRAPE_S, nice((end - start) / max_points))
    return {
        "__interval": f"{interval}s",
        "__rate_interval": f"{max(interval + SCRAPE_S, 4 * SCRAPE_S)}s",
        "__range": f"{int(end - start)}s",
        "step": str(interval),
    }


def substitute(query: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):  # $__rate_interval before $__range
        query = query.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return query


def variable_values(prom: Prometheus, board: dict[str, Any]) -> dict[str, str]:
    """Each query variable at Grafana's "All" (its allValue), after checking its
    label_values() query answers through Prometheus's label API as Grafana asks it."""
    out = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        metric, label = var["query"]["query"].removeprefix("label_values(").removesuffix(")").split(", ")
        prom.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
        out[var["name"]] = var["allValue"]
    return out


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(v)) for series in result for _, v in series["values"])


def panel_results(prom: Prometheus, board: dict[str, Any], when: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every query of every panel, as a range query over the run: no query may fail."""
    times = grafana_range(when["start"], when["end"])
    values = variable_values(prom, board) | times
    out: dict[str, list[dict[str, Any]]] = {}
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = substitute(target["expr"], values)
            assert "$" not in expr, f"{panel['title']}: {expr}"
            data = prom.get("/api/v1/query_range", query=expr, start=when["start"], end=when["end"], step=times["step"])
            out.setdefault(panel["title"], []).extend(data["result"])
    return out


@pytest.mark.parametrize("uid", list(MUST_SHOW))
def test_every_panel_query_runs_and_the_listed_panels_show_data(
    uid: str, prometheus: Prometheus, run: dict[str, Any]
) -> None:
    board = next(json.loads(p.read_text()) for p in BOARDS.glob("*.json") if json.loads(p.read_text())["uid"] == uid)
    results = panel_results(prometheus, board, run)
    assert sorted(MUST_SHOW[uid]) == sorted(p["title"] for p in board["panels"])  # the list covers the board
    empty = [title for title in MUST_SHOW[uid] if not has_data(results[title])]
    assert not empty, f"{uid}: no data in {empty}"


def test_the_failed_videos_kind_shows_in_the_failure_panels(prometheus: Prometheus, run: dict[str, Any]) -> None:
    assert run["failed"]["kind"] == "bad_input"
    pipeline = json.loads((BOARDS / "pipeline.json").read_text())
    failures = panel_results(prometheus, pipeline, run)["Failures by kind"]
    seen = {s["metric"]["kind"] for s in failures if any(float(v) > 0 for _, v in s["values"])}
    assert seen == {"bad_input"}, seen
    stages = json.loads((BOARDS / "stages.json").read_text())
    dead = panel_results(prometheus, stages, run)["Dead letters"]
    assert {(s["metric"]["topic"], s["metric"]["kind"]) for s in dead if any(float(v) > 0 for _, v in s["values"])} == {
        ("video.requested", "permanent")
    }


def test_one_stage_picked_in_the_variable_narrows_the_stage_panels(prometheus: Prometheus, run: dict[str, Any]) -> None:
    board = json.loads((BOARDS / "stages.json").read_text())
    times = grafana_range(run["start"], run["end"])
    panel = next(p for p in board["panels"] if p["title"] == "Units by outcome")
    expr = substitute(panel["targets"][0]["expr"], times | {"namespace": ".*", "stage": "transcoder"})
    data = prometheus.get("/api/v1/query_range", query=expr, start=run["start"], end=run["end"], step=times["step"])
    assert data["result"] and {s["metric"]["stage"] for s in data["result"]} == {"transcoder"}


def test_every_alert_rule_is_loaded_and_evaluates_and_none_fires_on_a_healthy_run(
    prometheus: Prometheus, run: dict[str, Any]
) -> None:
    for group in ALERTS["groups"]:
        for rule in group["rules"]:
            prometheus.instant(rule["expr"])  # a query error fails here
    time.sleep(SCRAPE_S + 1)  # one more evaluation of the rules after the run
    loaded = {r["name"]: r for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]}
    assert set(loaded) == {r["alert"] for g in ALERTS["groups"] for r in g["rules"]}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
    # One failed video is a client's bad upload: nothing pages for it.
    firing = [a["labels"]["alertname"] for a in prometheus.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    assert firing == [], firing


def test_the_video_dashboards_sql_returns_the_videos_rows(run: dict[str, Any], e2e_settings: Settings) -> None:
    board = json.loads((BOARDS / "video.json").read_text())
    with psycopg.connect(e2e_settings.postgres_url) as conn:
        for which in ("good", "failed"):
            vid = run[which]["video_id"]
            rows = {
                p["title"]: conn.execute(substitute(p["targets"][0]["rawSql"], {"video": vid})).fetchall()
                for p in board["panels"]
            }
            (video,) = rows["Video"]
            assert video[0] == vid and video[2] == ("completed" if which == "good" else "failed")
            assert rows["Events"], which
            if which == "good":
                assert len(rows["Segments"]) >= 2 and len(rows["Timings per segment"]) == len(rows["Segments"])
                # stage, attempt, hand-backs: nothing killed here
                assert all(r[2] == "uploaded" and r[3] >= 1 and r[4] == 0 for r in rows["Segments"])
