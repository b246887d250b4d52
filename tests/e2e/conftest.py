"""Every service as a separate process (the supervisor's fleet) on the test stack."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import fleet as fleet_proc
from reel.settings import Settings
from reel.tokens import digest

# Each tenant's bearer token; acme has two (rotation: either is accepted).
TOKENS = {
    "default": "e2e-default-token",
    "acme": "e2e-acme-token",
    "acme-next": "e2e-acme-next",
    "beta": "e2e-beta-token",
}
E2E_ENV = {
    "REEL_TENANT_TOKENS": ",".join(f"{t.removesuffix('-next')}:{digest(token)}" for t, token in TOKENS.items()),
    "REEL_TRACKER_TOKEN": TOKENS["default"],  # what the CLI presents
    "REEL_AUTH_WINDOW_S": "1",  # the tests share one client address: a short window
    "REEL_MIN_SEGMENT_S": "2",
    "REEL_TRANSCODERS": "2",
    "REEL_DRAIN_TIMEOUT_S": "20",
    "REEL_MAX_DURATION_S": "60",
    "REEL_MAX_DIMENSION": "4096",
    "REEL_TRACKER_PORT": "28080",
    "REEL_CALLBACK_SECRET": "e2e-callback-secret",
    "REEL_PLAYBACK_SECRET": "e2e-playback-secret",
    "REEL_CALLBACK_BACKOFF_S": "0.3",
    "REEL_CALLBACK_ALLOW": "127.0.0.1",  # the tests' own receivers
    # The plan does not follow a transcoder being restarted after a kill: runs compare.
    "REEL_PLAN_WORKERS": "2",
}


@pytest.fixture(scope="session")
def fleet(stack: Settings, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The services under the supervisor; yields the folder of their logs."""
    home = Path(stack_env["REEL_HOME"])
    env = {
        **os.environ,
        **stack_env,
        **E2E_ENV,
        "REEL_FAULT_FILE": str(home / "faults.armed"),
        "REEL_FAULT_LOG": str(home / "faults.log"),
        "REEL_SCRATCH_DIR": str(home / "scratch"),
        "REEL_PROFILES_DIR": str(home / "profiles"),
    }
    (home / "profiles").mkdir(exist_ok=True)  # tests add their own profiles there
    (home / "faults.armed").write_text("")  # armed by tests/e2e/test_kill_matrix.py only
    proc = fleet_proc.start(env, tmp_path_factory.mktemp("fleet") / "supervisor.log", int(E2E_ENV["REEL_TRACKER_PORT"]))
    try:
        yield home / "logs"
    finally:
        fleet_proc.halt(proc)


@pytest.fixture(scope="session")
def e2e_settings(stack: Settings) -> Settings:
    return dataclasses.replace(stack, profiles_dir=str(stack.home / "profiles"))
