"""The services under the supervisor, started apart from `reel up` (the e2e tests and the
fingerprint script bring their own), and stopped the way `reel down` stops them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from devstack.procs import stop
from reel import PROJECT_ROOT


def start(env: Mapping[str, str], log: Path, tracker_port: int, timeout: float = 120) -> subprocess.Popen[bytes]:
    """The supervisor with its fleet, returned once the tracker answers /readyz (it has
    connected and taken its partitions)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.supervisor"],
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{tracker_port}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            halt(proc)
            raise RuntimeError(f"the fleet's tracker never answered on port {tracker_port}; see {log}")
        time.sleep(0.5)


def halt(proc: subprocess.Popen[bytes], grace: float = 60) -> None:
    """SIGTERM: every worker drains; what is left after `grace` is killed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        stop(proc.pid, grace=0)
