"""Each service starts, connects, logs and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request

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
    try:
        assert proc.stderr is not None
        lines: list[dict] = []
        pending = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lines and "ready" in lines[-1]["msg"]):
            if select.select([proc.stderr], [], [], 1.0)[0]:
                pending += os.read(proc.stderr.fileno(), 65536)
                *complete, pending = pending.split(b"\n")
                lines += [json.loads(line) for line in complete if line.strip()]
        assert lines and lines[-1]["msg"].startswith(f"{name}-7 ready"), lines
        port = next(int(ln["msg"].rsplit(":", 1)[1]) for ln in lines if ln["msg"].startswith("metrics on"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert f'reel_service_up{{service="{name}",slot="7"}} 1.0' in resp.read().decode()
        assert all(line["service"] == f"{name}-7" for line in lines)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert json.loads((pending + rest).strip().splitlines()[-1])["msg"].endswith("stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
