"""A rolling upgrade on a stack of its own: every service of an older release (a git
worktree of UPGRADE_FROM) processes a video; midway, each kind is replaced by this
checkout's, readers first (the tracker, then the pusher, transcoder, puller, splitter),
each old process drained by SIGTERM before its successor starts in the same slot, as a
StatefulSet's rolling update does. Old and new run side by side through the switch. The
video completes as a viewer would have it, so does one submitted after, and nothing is
dead-lettered or failed (docs/operations.md: the upgrade order)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.clips import synthetic
from reel import PROJECT_ROOT
from reel.contract import Registry
from reel.kafka import read_to_end
from reel.pipeline import WORKER_KINDS, dead_letter_topics
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import Submission, submit, wait
from tests import stacks
from tests.e2e.media_checks import download, judge

# The release upgraded from: the last commit before the Kubernetes deployment (override
# with REEL_UPGRADE_FROM, e.g. the previous tag).
UPGRADE_FROM = os.environ.get("REEL_UPGRADE_FROM", "26c87f4381417816afd8a84ef01c69c3ab80930e")
ENV = {
    "REEL_KAFKA_PORT": "24092",
    "REEL_S3_PORT": "17433",
    "REEL_PG_PORT": "24432",
    "REEL_TRACKER_PORT": "24080",
    "REEL_MIN_SEGMENT_S": "2",
    "REEL_PLAN_WORKERS": "2",
    "REEL_DRAIN_TIMEOUT_S": "60",
}
ORDER = ("tracker", "pusher", "transcoder", "puller", "splitter")  # readers of each event first


def resolve(commit: str) -> str:
    git = ["git", "-C", str(PROJECT_ROOT)]
    found = subprocess.run([*git, "rev-parse", "--verify", f"{commit}^{{commit}}"], capture_output=True, text=True)
    if found.returncode != 0:  # a shallow clone: fetch the history once
        subprocess.run([*git, "fetch", "--unshallow", "--quiet"], capture_output=True)
        found = subprocess.run([*git, "rev-parse", "--verify", f"{commit}^{{commit}}"], capture_output=True, text=True)
    assert found.returncode == 0, f"the release to upgrade from ({commit}) is not in this clone's history"
    return found.stdout.strip()


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tree = tmp_path_factory.mktemp("old") / "reel"
    commit = resolve(UPGRADE_FROM)
    subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "worktree", "add", "--detach", str(tree), commit],
        check=True,
        capture_output=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True
        )


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Settings]]:
    with stacks.own_stack(tmp_path_factory.mktemp("upgrade") / "home", ENV) as stack:
        yield stack


class Fleet:
    """One process per service kind, each from the tree it was started from."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, kind: str, tree: Path, release: str) -> None:
        env = {**self.env, "PYTHONPATH": str(tree), "REEL_SLOT": "0", "REEL_SCRATCH_DIR": str(self.logs / "scratch")}
        log = (self.logs / f"{kind}-{release}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", f"services.{kind}"], cwd=tree, env=env, stderr=log, stdout=log)
        self.procs[kind] = (release, proc)
        deadline = time.monotonic() + 90
        while f"{kind}-0 ready" not in (self.logs / f"{kind}-{release}.log").read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, f"{release} {kind} did not start"
            time.sleep(0.3)

    def drain(self, kind: str) -> None:
        """SIGTERM, as the kubelet sends it: it finishes its unit, commits and exits."""
        release, proc = self.procs.pop(kind)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, f"the {release} {kind} did not drain cleanly"

    def stop_all(self) -> None:
        for _release, proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for _release, proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def fleet_kinds() -> tuple[str, ...]:
    return ("tracker", *WORKER_KINDS)


def transcoded(s: Settings, video_id: str) -> int:
    registry = Registry()
    events = [
        registry.decode_for_topic("segment.transcoded", m.value()) for m in read_to_end(s, ["segment.transcoded"])
    ]
    return sum(1 for e in events if e["video_id"] == video_id)


def old_submit(env: dict[str, str], tree: Path, clip: Path, request_id: str) -> Submission:
    """Submitted with the old release's own CLI, as its clients would have: the request is
    written in the old schemas, which the new readers must take."""
    since = int(time.time() * 1000)
    done = subprocess.run(
        [sys.executable, "-m", "reel.cli", "submit", str(clip), "--profile", "tiny", "--format", "mp4,hls",
         "--request-id", request_id],
        cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Submission(done.stdout.split()[0], True, since)


def test_a_rolling_upgrade_finishes_every_video_and_dead_letters_nothing(
    own_stack: tuple[dict[str, str], Settings], old_tree: Path, tmp_path: Path
) -> None:
    env, s = own_stack
    storage = Storage.from_settings(s)
    fleet = Fleet(env, tmp_path / "logs")
    try:
        for kind in fleet_kinds():
            fleet.start(kind, old_tree, "old")
        clip = synthetic(tmp_path / "across.mp4", size="640x360", seconds=120)
        across = old_submit(env, old_tree, clip, f"upgrade-{uuid.uuid4()}")  # an old client: old events
        deadline = time.monotonic() + 180
        while transcoded(s, across.video_id) < 1:  # midway: the old release has done part of it
            assert time.monotonic() < deadline, "the old release never got going"
            time.sleep(1)
        for kind in ORDER:
            fleet.drain(kind)
            fleet.start(kind, PROJECT_ROOT, "new")
        after = submit(s, storage, clip, "tiny", ["mp4"], request_id=f"upgrade-after-{uuid.uuid4()}")
        for sub in (across, after):
            end = wait(s, sub.video_id, sub.submitted_ms, timeout=400)
            assert end["topic"] == "video.completed", end
            out = tmp_path / sub.video_id
            download(s, storage, sub.video_id, out)
            judge(clip, out)
    finally:
        fleet.stop_all()
        (PROJECT_ROOT / ".reel-test").mkdir(exist_ok=True)
        for log in (tmp_path / "logs").glob("*.log"):
            shutil.copy(log, PROJECT_ROOT / ".reel-test" / f"upgrade-{log.name}")
    # The first video really went across the switch: old and new transcoders each encoded
    # part of it, so new readers took old writers' events (and the reverse, upstream).
    for release in ("old", "new"):
        log = (tmp_path / "logs" / f"transcoder-{release}.log").read_text()
        worked = [line for line in log.splitlines() if "task completed" in line and across.video_id in line]
        assert worked, f"the {release} transcoder did none of the video processed across the switch"
    assert read_to_end(s, dead_letter_topics()) == [], "something was dead-lettered"
    assert read_to_end(s, ["video.failed"]) == []
    assert sorted(ORDER) == sorted(fleet_kinds())  # every kind was rolled
