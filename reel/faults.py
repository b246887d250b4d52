"""Test-only fault points: the process SIGKILLs its whole process group (so no ffmpeg
child survives) when it reaches a named point.

Two ways to arm them:
- REEL_FAULT=<point>[@n]: the n-th time this process reaches <point> (set at start);
- REEL_FAULT_FILE=<path>: lines "<arm-id> <service> <point> [field=value ...]", read at
  every point, so a test can arm a running fleet; the fields narrow it to a task by its
  log context (e.g. segment=1). Each arm fires once across restarts: it is skipped when
  REEL_FAULT_LOG already records its id.

Points of the worker loop: before-work, after-produce, after-commit. Stages name their
own (mid-work, mid-pull, mid-encode, mid-encode-audio, mid-place, mid-join, mid-upload,
mid-batch); a multipart upload has mid-part, between two parts. REEL_FAULT_LOG, when set,
gets one line per kill, written before dying: "<point> <pid> [<arm-id>]", so a test can
count the windows it hit.
"""

from __future__ import annotations

import os
import signal
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
        arm = _armed(armed, point)
        if arm:
            _die(point, arm)


def _armed(path: str, point: str) -> str | None:
    try:
        with open(path) as f:
            lines = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return None
    context = current_context()
    for arm_id, service, wanted, *conditions in lines:
        matches = all(str(context.get(k)) == v for k, _, v in (c.partition("=") for c in conditions))
        if service == _service and wanted == point and matches and not _fired(arm_id):
            return str(arm_id)
    return None


def _fired(arm_id: str) -> bool:
    log_path = os.environ.get("REEL_FAULT_LOG")
    if not log_path or not os.path.exists(log_path):
        return False
    with open(log_path) as f:
        return any(line.split()[2:3] == [arm_id] for line in f)


def _die(point: str, arm_id: str = "") -> None:
    log_path = os.environ.get("REEL_FAULT_LOG")
    if log_path:
        with open(log_path, "a") as f:
            f.write(f"{point} {os.getpid()} {arm_id}".rstrip() + "\n")
            f.flush()
            os.fsync(f.fileno())
    os.killpg(os.getpgrp(), signal.SIGKILL)
