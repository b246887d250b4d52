"""Every service as a separate process (the supervisor's fleet) on the test stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reel import PROJECT_ROOT
from reel.settings import Settings
from reel.stack.procs import stop

E2E_ENV = {"REEL_MIN_SEGMENT_S": "2", "REEL_TRANSCODERS": "2", "REEL_DRAIN_TIMEOUT_S": "20",
           "REEL_MAX_DURATION_S": "60", "REEL_MAX_DIMENSION": "4096", "REEL_TRACKER_PORT": "28080"}  # fmt: skip


@pytest.fixture(scope="session")
def fleet(stack: Settings, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The services under the supervisor; yields the folder of their logs."""
    env = {**os.environ, **stack_env, **E2E_ENV}
    logs = Path(stack_env["REEL_HOME"]) / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reel.supervisor"], cwd=PROJECT_ROOT, env=env,
        stdout=open(tmp_path_factory.mktemp("fleet") / "supervisor.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield logs
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stop(proc.pid, grace=0)


@pytest.fixture(scope="session")
def e2e_settings(stack: Settings) -> Settings:
    return stack
