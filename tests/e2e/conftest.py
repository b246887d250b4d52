"""Every service as a separate process (the supervisor's fleet) on the test stack."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reel import PROJECT_ROOT
from reel.settings import Settings
from reel.stack.procs import stop

E2E_ENV = {"REEL_MIN_SEGMENT_S": "2", "REEL_TRANSCODERS": "2", "REEL_DRAIN_TIMEOUT_S": "20",
           "REEL_MAX_DURATION_S": "60", "REEL_MAX_DIMENSION": "4096", "REEL_TRACKER_PORT": "28080",
           "REEL_CALLBACK_SECRET": "e2e-callback-secret",
           "REEL_PLAYBACK_SECRET": "e2e-playback-secret", "REEL_CALLBACK_BACKOFF_S": "0.3",
           # The plan does not follow a transcoder being restarted after a kill: runs compare.
           "REEL_PLAN_WORKERS": "2"}  # fmt: skip


@pytest.fixture(scope="session")
def fleet(stack: Settings, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The services under the supervisor; yields the folder of their logs."""
    home = Path(stack_env["REEL_HOME"])
    env = {**os.environ, **stack_env, **E2E_ENV, "REEL_FAULT_FILE": str(home / "faults.armed"),
           "REEL_FAULT_LOG": str(home / "faults.log"), "REEL_SCRATCH_DIR": str(home / "scratch"),
           "REEL_PROFILES_DIR": str(home / "profiles")}  # fmt: skip
    (home / "profiles").mkdir(exist_ok=True)  # tests add their own profiles there
    (home / "faults.armed").write_text("")  # armed by tests/e2e/test_kill_matrix.py only
    logs = home / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reel.supervisor"], cwd=PROJECT_ROOT, env=env,
        stdout=open(tmp_path_factory.mktemp("fleet") / "supervisor.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{E2E_ENV['REEL_TRACKER_PORT']}/readyz", proc)
        yield logs
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stop(proc.pid, grace=0)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """The tracker answers /readyz once it has connected and assigned its partitions."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, "the supervisor exited"
        assert time.monotonic() < deadline, f"the fleet's tracker never answered {url}"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def e2e_settings(stack: Settings) -> Settings:
    return dataclasses.replace(stack, profiles_dir=str(stack.home / "profiles"))
