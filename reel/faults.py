"""Test-only fault points: REEL_FAULT=<point>[@n] makes the process SIGKILL its whole
process group (so no ffmpeg child survives) the n-th time it reaches <point>.

Points of the worker loop: before-work, mid-work, after-produce, after-commit.
Stages may name their own (e.g. mid-encode). REEL_FAULT_LOG, when set, gets one
line per kill, written before dying, so a test can count the windows it hit.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter[str] = Counter()


def parse(spec: str) -> tuple[str, int]:
    point, _, nth = spec.partition("@")
    return point.strip(), int(nth or 1)


def fault_point(point: str, spec: str | None = None) -> None:
    spec = os.environ.get("REEL_FAULT", "") if spec is None else spec
    if not spec:
        return
    wanted, nth = parse(spec)
    if wanted != point:
        return
    _hits[point] += 1
    if _hits[point] != nth:
        return
    log_path = os.environ.get("REEL_FAULT_LOG")
    if log_path:
        with open(log_path, "a") as f:
            f.write(f"{point} {os.getpid()}\n")
            f.flush()
            os.fsync(f.fileno())
    os.killpg(os.getpgrp(), signal.SIGKILL)
