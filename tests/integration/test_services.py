"""Each service starts, connects, logs and stops cleanly on SIGTERM: from the checkout, and
from a plain (not editable) `pip install` of a wheel built from it into a fresh venv, run
outside the repository, so schemas, migrations, profiles and the player come from the
package alone."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack import clips
from reel import PROJECT_ROOT
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit
from reel.tokens import DEV_TOKEN
from tests.k8s.render import build, of

SERVICES = ["splitter", "puller", "transcoder", "pusher", "tracker"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding reel as `pip install` of its wheel puts it: the venv's python."""
    tmp = tmp_path_factory.mktemp("installed")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(PROJECT_ROOT)]
    subprocess.run(build, check=True, timeout=600)
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
    python = tmp / "venv" / "bin" / "python"
    wheel = next((tmp / "dist").glob("reel-*.whl"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], check=True, timeout=900
    )
    where = subprocess.run(
        [str(python), "-c", "import reel, services; print(reel.__file__, services.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp,
    ).stdout
    assert str(PROJECT_ROOT) not in where and where.count(str(tmp / "venv")) == 2, where
    return python


@pytest.fixture(params=["checkout", "installed"])
def python(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """(interpreter, working folder): the repository's, or the installed venv's outside it."""
    if request.param == "checkout":
        return sys.executable, PROJECT_ROOT
    venv_python = request.getfixturevalue("installed")
    return str(venv_python), venv_python.parents[2]


@pytest.mark.parametrize("name", SERVICES)
def test_service_starts_and_stops_on_sigterm(
    name: str, python: tuple[str, Path], stack: Settings, stack_env: dict[str, str]
) -> None:
    interpreter, cwd = python
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **stack_env, "REEL_SLOT": "7"}
    proc = subprocess.Popen(
        [interpreter, "-m", f"services.{name}"],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    try:
        assert proc.stderr is not None
        lines: list[dict] = []
        pending = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lines and lines[-1]["msg"].startswith(f"{name}-7 ready")):
            if select.select([proc.stderr], [], [], 1.0)[0]:
                pending += os.read(proc.stderr.fileno(), 65536)
                *complete, pending = pending.split(b"\n")
                lines += [json.loads(line) for line in complete if line.strip()]
        assert lines and lines[-1]["msg"].startswith(f"{name}-7 ready"), lines
        port = next(int(ln["msg"].rsplit(":", 1)[1]) for ln in lines if ln["msg"].startswith("metrics,"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert f'reel_service_up{{service="{name}",slot="7"}} 1.0' in resp.read().decode()
        for probe in ("/healthz", "/readyz"):  # its loop turns; Kafka and S3 are reachable
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=5) as resp:
                assert (resp.status, resp.read()) == (200, b"ok\n"), probe
        assert all(line["service"] == f"{name}-7" for line in lines)
        if name == "tracker":  # its migrations ran (it answers), and the player ships with it
            tracker = f"http://127.0.0.1:{stack.tracker_port}"
            with urllib.request.urlopen(f"{tracker}/player/hls.min.js", timeout=5) as resp:
                assert resp.status == 200 and b"Hls" in resp.read()
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert json.loads((pending + rest).strip().splitlines()[-1])["msg"].endswith("stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float = 60) -> bytes:
    """The body at url once it answers, asked with the development tenant's token."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {DEV_TOKEN}"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_tracker_roles_split_the_work(
    stack: Settings, stack_env: dict[str, str], storage: Storage, tmp_path: Path
) -> None:
    """As a cluster runs it: the schema by a one-shot migrate, one projector, an API apart.
    A video submitted is projected by the one and read through the other; every series the
    scaling objects ask for (HPAs through the adapter, ScaledObjects) is in the projector's
    scrape, with the labels they select."""
    env = {**os.environ, **stack_env}
    migrate = subprocess.run(
        [sys.executable, "-m", "services.tracker"],
        env={**env, "REEL_TRACKER_ROLE": "migrate"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0 and "schema at 0" in migrate.stderr, migrate.stderr
    ports = {"projector": free_port(), "api": free_port()}
    api_port = free_port()
    procs = {
        role: subprocess.Popen(
            [sys.executable, "-m", "services.tracker"],
            env={
                **env,
                "REEL_TRACKER_ROLE": role,
                "REEL_METRICS_PORT": str(ports[role]),
                "REEL_TRACKER_PORT": str(api_port),
                "REEL_SLOT": "3",
            },
            stderr=subprocess.DEVNULL,
        )
        for role in ("projector", "api")
    }
    try:
        clip = clips.synthetic(tmp_path / "clip.mp4", seconds=1)
        sub = submit(stack, storage, clip, "tiny", ["mp4"], request_id=f"roles-{uuid.uuid4()}")
        deadline = time.monotonic() + 60
        while True:
            body = json.loads(wait_for(f"http://127.0.0.1:{api_port}/videos?limit=50"))
            if any(v["video_id"] == sub.video_id for v in body["videos"]):
                break
            assert time.monotonic() < deadline, "the API never saw the projected video"
            time.sleep(0.5)
        # One refresh sets lag first and the backlog after its database reads: wait for all.
        wanted = [(o, name, labels) for o in ("prod", "keda") for name, labels in scaling_series(build(o))]
        while True:
            scrape = wait_for(f"http://127.0.0.1:{ports['projector']}/metrics").decode()
            missing = [f"{o}: {name}{labels}" for o, name, labels in wanted if not series_present(scrape, name, labels)]
            if not missing:
                break
            assert time.monotonic() < deadline + 30, f"not in the projector's scrape: {missing}"
            time.sleep(0.5)
        api_metrics = wait_for(f"http://127.0.0.1:{ports['api']}/metrics").decode()
        assert "reel_consumer_lag{" not in api_metrics  # the gauges are the projector's alone: replicas would add up
        for role, port in ports.items():  # the API has no loop to stall: live all the same
            assert wait_for(f"http://127.0.0.1:{port}/healthz") == b"ok\n", role
        for role, proc in procs.items():
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, role
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def scaling_series(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, str]]]:
    """The series each HPA (through prometheus-adapter's rules) or ScaledObject (its query)
    asks Prometheus for: a metric name and its label matchers."""
    wanted = []
    for hpa in of(docs, "HorizontalPodAutoscaler").values():
        for m in hpa["spec"]["metrics"]:
            wanted.append((m["external"]["metric"]["name"], m["external"]["metric"]["selector"]["matchLabels"]))
    for rules in (
        yaml.safe_load(c["data"]["config.yaml"])
        for c in of(docs, "ConfigMap").values()
        if "config.yaml" in c.get("data", {})
    ):
        for rule in rules["externalRules"]:
            (name,) = re.findall(r'__name__="([a-z_]+)"', rule["seriesQuery"])
            wanted.append((name, {}))
    for so in of(docs, "ScaledObject").values():
        for trigger in so["spec"]["triggers"]:
            name, matchers = re.fullmatch(r"max\((\w+)\{(.*)\}\)", trigger["metadata"]["query"]).groups()  # type: ignore[union-attr]
            wanted.append((name, dict(re.findall(r'(\w+)="([^"]*)"', matchers))))
    assert wanted
    return wanted


def series_present(scrape: str, name: str, labels: dict[str, str]) -> bool:
    return any(
        s.name == name and labels.items() <= s.labels.items()
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
    )
