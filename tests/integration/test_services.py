"""Each service starts, connects, logs and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from reel import PROJECT_ROOT
from reel.settings import Settings

SERVICES = ["splitter", "puller", "transcoder", "pusher", "tracker"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_starts_and_stops_on_sigterm(name: str, stack: Settings, stack_env: dict[str, str]) -> None:
    env = {**os.environ, **stack_env, "REEL_SLOT": "7"}
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"], cwd=PROJECT_ROOT, env=env,
        stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[dict] = []
    pending = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lines and "ready" in lines[-1]["msg"]):
        if select.select([proc.stderr], [], [], 1.0)[0]:
            pending += os.read(proc.stderr.fileno(), 65536)
            *complete, pending = pending.split(b"\n")
            lines += [json.loads(line) for line in complete if line.strip()]
    assert lines and lines[-1]["msg"] == f"{name}-7 ready", lines
    assert all(line["service"] == f"{name}-7" for line in lines)
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert json.loads((pending + rest).strip().splitlines()[-1])["msg"].endswith("stopped")
