"""Autoscaling on a stack of its own (`reel up` with REEL_AUTOSCALE=1, small simulated nodes
where cgroups can be written): a burst of videos of very different lengths grows the fleet
to max, every video completes through the stitch gate, the fleet shrinks back to min once
the stabilisation window has passed, nothing is handed back by scaling, and every logged
decision is the rule's for the metric logged beside it. The autoscaler SIGKILLed mid-run
changes nothing that runs, and the restarted one starts from the live fleet. With min 0, no
worker runs until work comes; each kind comes back for its first unit and goes again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import nodes
from devstack.clips import synthetic
from devstack.procs import stop
from reel.autoscale import Behavior, History, Rule, decide
from reel.contract import Registry
from reel.kafka import read_to_end
from reel.pipeline import WORKER_KINDS
from reel.settings import Settings, load
from reel.storage import Storage
from reel.submit import Submission, submit, wait

LENGTHS_S = (24, 16, 8, 4)  # longest first: each later one finds the earlier in its burst
MAX = 4
WINDOW_S = 15
ENV = {
    "REEL_KAFKA_PORT": "22092",
    "REEL_S3_PORT": "19333",
    "REEL_PG_PORT": "22432",
    "REEL_TRACKER_PORT": "27180",
    "REEL_AUTOSCALE": "1",
    "REEL_AUTOSCALE_MIN": "1",
    "REEL_AUTOSCALE_MAX": str(MAX),
    "REEL_AUTOSCALE_TARGET_S": "3",
    "REEL_AUTOSCALE_TARGET_LAG": "1",
    "REEL_AUTOSCALE_INTERVAL_S": "1",
    "REEL_AUTOSCALE_DOWN_WINDOW_S": str(WINDOW_S),
    "REEL_MIN_SEGMENT_S": "2",
    "REEL_DRAIN_TIMEOUT_S": "120",
}
CGROUPS = nodes.available()
if CGROUPS:  # each node half a core: an encode there is throttled
    ENV |= {"REEL_NODE_CPU": "0.5", "REEL_STACK_CPU": "1.0"}


def reel(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "reel.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Settings]]:
    home = tmp_path_factory.mktemp("autoscaled") / "home"
    env = {**os.environ, **ENV, "REEL_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    started = reel(env, "up")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield env, load(env)
    finally:
        # Down without the setting still removes the nodes: they belong to the home.
        downed = reel({k: v for k, v in env.items() if k != "REEL_NODE_CPU"}, "down")
    assert downed.returncode == 0, downed.stdout + downed.stderr
    if CGROUPS:
        base = nodes.Nodes(home, 0.0, 0.0).base
        left = {g.name: [cmdline(pid) for pid in nodes.members(g)] for g in base.glob("*/")}
        assert not base.exists(), f"reel down left the nodes' cgroups: {left}"


class Watch:
    """services.json sampled every half second: (time, {kind: [(slot, pid, wanted)]})."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.samples: list[tuple[float, dict[str, list[tuple[int, int | None, bool]]]]] = []
        self.stop = threading.Event()
        self.nodes_seen: dict[int, str] = {}  # pid -> its cpu cgroup, as the kernel says
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                slots = json.loads((self.home / "services.json").read_text())
            except (OSError, ValueError):
                continue
            now: dict[str, list[tuple[int, int | None, bool]]] = {}
            for s in slots:
                now.setdefault(s["kind"], []).append((s["slot"], s["pid"], s.get("wanted", True)))
                if s["pid"] and s["pid"] not in self.nodes_seen:
                    self.nodes_seen[s["pid"]] = cpu_cgroup(s["pid"])
            self.samples.append((time.monotonic(), now))

    def wanted(self, kind: str) -> int:
        return sum(1 for _slot, _pid, w in self.samples[-1][1].get(kind, []) if w) if self.samples else 0

    def until_grown(self, kind: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.wanted(kind) < 2:
            assert time.monotonic() < deadline, f"the {kind}s never grew"
            time.sleep(0.5)

    def most(self, kind: str) -> int:
        return max((sum(1 for *_x, w in s.get(kind, []) if w) for _t, s in self.samples), default=0)

    def settled_at(self, count: int) -> bool:
        """Every worker kind at `count` slots, none draining."""
        last = self.samples[-1][1] if self.samples else {}
        return bool(self.samples) and all(len(last.get(k, [])) == count for k in WORKER_KINDS)

    def until_settled(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.settled_at(count):
            assert time.monotonic() < deadline, f"the fleet did not settle at {count}: {self.samples[-1][1]}"
            time.sleep(1)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return f"{pid} (gone)"


def cpu_cgroup(pid: int) -> str:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return ""
    return next((ln.split(":", 2)[2] for ln in lines if ln.split(":")[1] == "cpu"), "")


def events(settings: Settings, topic: str) -> list[dict[str, Any]]:
    registry = Registry()
    return [registry.decode_for_topic(topic, m.value()) for m in read_to_end(settings, [topic])]


def journal(settings: Settings) -> list[dict[str, Any]]:
    path = settings.home / "logs" / "autoscaler-decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def replay(settings: Settings, lines: list[dict[str, Any]]) -> None:
    """Every logged decision, per autoscaler process and kind, is decide() of the metric and
    count logged beside it, from a history started at that process's first decision."""
    behavior = Behavior(down_window_s=settings.autoscale_down_window_s)
    for pid, kind in {(line["pid"], line["kind"]) for line in lines}:
        mine = [line for line in lines if (line["pid"], line["kind"]) == (pid, kind)]
        target = settings.autoscale_target_lag if kind == "splitter" else settings.autoscale_target_s
        history = History.starting(mine[0]["now"], mine[0]["current"])
        for line in mine:
            rule = Rule(target, settings.autoscale_min, line["max"], behavior=behavior)
            decision, history = decide(rule, line["metric"], line["current"], line["now"], history)
            assert (decision.desired, decision.reason) == (line["desired"], line["reason"]), (kind, line)


def splits_logged(home: Path) -> dict[str, tuple[int, int]]:
    """Video id -> (transcoders planned for, burst siblings) of every split the splitters logged."""
    said = re.compile(r"split (\S+) for (\d+) transcoders \(burst siblings: (\d+)\)")
    lines = [ln for log in (home / "logs").glob("splitter-*.log") for ln in log.read_text().splitlines()]
    return {m[1]: (int(m[2]), int(m[3])) for m in map(said.search, lines) if m}


def clips(folder: Path) -> list[Path]:
    out = []
    for n in LENGTHS_S:
        out.append(folder / f"burst-{n}s.mp4")
        synthetic(out[-1], size="320x180", seconds=n)
    return out


def submitted(s: Settings, sources: list[Path]) -> tuple[Watch, list[Submission]]:
    """Every source submitted at once, watched until the transcoders have grown."""
    watch = Watch(s.home)
    storage = Storage.from_settings(s)
    subs = [submit(s, storage, p, "tiny", ["mp4"], request_id=str(uuid.uuid4())) for p in sources]
    watch.until_grown("transcoder")
    return watch, subs


def test_a_burst_grows_the_fleet_to_max_and_it_shrinks_to_min_once_the_work_is_done(
    scaled: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, s = scaled
    watch, subs = submitted(s, clips(tmp_path))
    ps = reel({**env, "COLUMNS": "250"}, "ps").stdout  # one table row a line
    assert re.search(r"transcoder\s.*\d+ running, \d+ desired", ps), ps  # reel ps: desired beside running
    ends = [wait(s, sub.video_id, sub.submitted_ms, timeout=600) for sub in subs]
    assert [e["topic"] for e in ends] == ["video.completed"] * len(subs), [e.get("reason") for e in ends]
    assert watch.most("transcoder") == MAX  # 52 s of media, 3 s per replica: capped at max
    # All the work upstream of the pushers is theirs to come: they grow while the first units
    # are still encoding. (Whether the pullers grow depends on the splits outrunning the
    # pulls, 0.5 s a unit here: each kind is held to its own decisions below instead.)
    assert watch.most("pusher") > 1
    watch.until_settled(1, WINDOW_S + 90)
    decisions = journal(s)
    watch.stop.set()
    asked = {kind: max(x["desired"] for x in decisions if x["kind"] == kind) for kind in WORKER_KINDS}
    assert {kind: watch.most(kind) for kind in WORKER_KINDS} == asked  # every count asked was run

    handed = [b for b in events(s, "task.progress") if b["state"] == "handed_back"]
    assert handed == [], "units were handed back while the fleet scaled"
    supervisor = (s.home / "logs" / "supervisor.log").read_text()
    assert supervisor.count("drained and exited with 0: scaled in") >= MAX - 1
    replay(s, decisions)

    longest = next(x for x in events(s, "video.split") if x["video_id"] == subs[0].video_id)
    assert longest["workers"] == MAX  # split for the fleet its backlog brings, not the one alive
    # The 4 s clip alone asks for ceil(3.2 / 3) = 2; requested last, its three siblings
    # were requested before it, each counted at its size: ceil(3.2 x 4 / 3), capped at max.
    plans = splits_logged(s.home)
    assert set(plans) == {sub.video_id for sub in subs}, plans
    assert plans[subs[-1].video_id] == (MAX, len(subs) - 1), plans
    assert all(workers == MAX for workers, _siblings in plans.values()), plans

    if CGROUPS:
        placed = {pid: group for pid, group in watch.nodes_seen.items() if group}
        assert any("/node-3" in g for g in placed.values()), placed  # the fourth node ran
        assert all(g.rsplit("/", 1)[-1].startswith(("node-", "stack")) for g in placed.values()), placed
        throttled = nodes.Nodes(s.home, s.node_cpu, s.stack_cpu).throttled()
        assert any(n > 0 for g, n in throttled.items() if g.startswith("node-")), throttled
    else:
        pytest.skip("no writable cgroup v1 cpu hierarchy: nodes were not limited (scaling was checked)")


def test_the_autoscaler_killed_mid_run_changes_nothing_and_restarts_from_the_live_fleet(
    scaled: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    _env, s = scaled
    watch, (sub,) = submitted(s, [synthetic(tmp_path / "long.mp4", size="320x180", seconds=24)])
    slots = json.loads((s.home / "services.json").read_text())
    (old,) = [x["pid"] for x in slots if x["kind"] == "autoscaler"]
    live = watch.wanted("transcoder")
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not (after := [x for x in journal(s) if x["pid"] != old and x["kind"] == "transcoder"]):
        assert time.monotonic() < deadline, "the autoscaler was not restarted"
        time.sleep(0.5)
    assert watch.wanted("transcoder") >= live  # nothing that ran was stopped meanwhile
    first = after[0]
    assert first["current"] == live and first["desired"] >= live  # from the live fleet, no scale-in below it
    end = wait(s, sub.video_id, sub.submitted_ms, timeout=600)
    watch.stop.set()
    assert end["topic"] == "video.completed", end.get("reason")
    assert not [b for b in events(s, "task.progress") if b["state"] == "handed_back" and b["video_id"] == sub.video_id]
    replay(s, [x for x in journal(s) if x["pid"] == first["pid"]])  # the new process's decisions, from its start


def test_from_zero_the_first_video_brings_each_kind_back_and_they_go_back_to_zero(
    scaled: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, s = scaled
    services = json.loads((s.home / "stack.json").read_text())["services"]["pid"]
    stop(services, grace=150)  # the fleet again, with no worker at all until work comes
    zero = {**env, "REEL_AUTOSCALE_MIN": "0"}
    restarted = reel(zero, "up")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    watch = Watch(s.home)
    watch.until_settled(0, 60)
    clip = synthetic(tmp_path / "six.mp4", size="320x180", seconds=6)
    sub = submit(s, Storage.from_settings(s), clip, "tiny", ["mp4"], request_id=str(uuid.uuid4()))
    end = wait(s, sub.video_id, sub.submitted_ms, timeout=300)
    assert end["topic"] == "video.completed", end.get("reason")
    assert all(watch.most(kind) >= 1 for kind in WORKER_KINDS)  # each came back for its first work
    watch.until_settled(0, WINDOW_S + 90)
    watch.stop.set()
    assert not [b for b in events(s, "task.progress") if b["state"] == "handed_back" and b["video_id"] == sub.video_id]
