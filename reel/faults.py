"""Test-only fault points: the process SIGKILLs its whole process group (so no ffmpeg
child survives) when it reaches a named point.

Two ways to arm them:
- REEL_FAULT=<point>[@n]: the n-th time this process reaches <point> (set at start);
- REEL_FAULT_FILE=<path>: lines "<arm-id> <service> <point> [field=value ...] [hold]", read
  at every point, so a test can arm a running fleet; the fields narrow it to a task by its
  log context (e.g. segment=1). Each arm fires once across restarts: it is skipped when
  REEL_FAULT_LOG already records its id. `hold` makes the process stop at the point
  instead of dying (logged first), until the test kills it or removes the line: the work
  is then provably unfinished when the test strikes.

Points of the worker loop: before-work, after-produce, before-bury (a committed
video.failed's tombstone), after-commit. Stages name their
own (mid-work, mid-pull, mid-encode, mid-encode-audio, mid-place, mid-join, mid-upload,
mid-batch); a multipart upload has mid-part, between two parts. REEL_FAULT_LOG, when set,
gets one line per kill, written before dying: "<point> <pid> [<arm-id>]", so a test can
count the windows it hit.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from reel.logs import current_context

_hits: Counter[str] = Counter()
_service = ""


def set_service(name: str) -> None:
    """Which service this process is, for REEL_FAULT_FILE's lines."""
    global _service
    _service = name


def parse(spec: str) -> tuple[str, int]:
    point, _, nth = spec.partition("@")
    return point.strip(), int(nth or 1)


def fault_point(point: str, spec: str | None = None) -> None:
    spec = os.environ.get("REEL_FAULT", "") if spec is None else spec
    if spec:
        wanted, nth = parse(spec)
        if wanted == point:
            _hits[point] += 1
            if _hits[point] == nth:
                _die(point)
    armed = os.environ.get("REEL_FAULT_FILE")
    if armed:
        found = _armed(armed, point)
        if found and found[1]:
            _hold(armed, point, found[0])
        elif found:
            _die(point, found[0])


def _arms(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _armed(path: str, point: str) -> tuple[str, bool] | None:
    """(arm id, hold) of the first unfired arm for this service, point and task."""
    context = current_context()
    for arm_id, service, wanted, *rest in _arms(path):
        conditions = [c.partition("=") for c in rest if "=" in c]
        matches = all(str(context.get(k)) == v for k, _, v in conditions)
        if service == _service and wanted == point and matches and not _fired(arm_id):
            return str(arm_id), "hold" in rest
    return None


def _fired(arm_id: str) -> bool:
    log_path = os.environ.get("REEL_FAULT_LOG")
    if not log_path or not os.path.exists(log_path):
        return False
    with open(log_path) as f:
        return any(line.split()[2:3] == [arm_id] for line in f)


def _record(line: str) -> None:
    log_path = os.environ.get("REEL_FAULT_LOG")
    if log_path:
        with open(log_path, "a") as f:
            f.write(line.rstrip() + "\n")
            f.flush()
            os.fsync(f.fileno())


def _die(point: str, arm_id: str = "") -> None:
    _record(f"{point} {os.getpid()} {arm_id}")
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _hold(path: str, point: str, arm_id: str) -> None:
    """Freeze here, and freeze this process's children (an ffmpeg half way through its
    encode would otherwise finish while we wait), until the arm's line is removed."""
    children = _children()
    for pid in children:
        os.kill(pid, signal.SIGSTOP)
    _record(f"{point} {os.getpid()} {arm_id} held")
    while any(arm[:1] == [arm_id] for arm in _arms(path)):
        time.sleep(0.1)
    for pid in children:
        os.kill(pid, signal.SIGCONT)


def _children() -> list[int]:
    pids: list[int] = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except FileNotFoundError:  # the thread ended since the listing
            continue
    return pids
