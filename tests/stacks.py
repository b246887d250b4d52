"""A stack of a test's own, on its own ports and home, wiped by leaving it: for tests that
run another release or other settings beside the shared test stack."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from devstack import down, up
from reel.settings import Settings, load


@contextmanager
def own_stack(home: Path, settings: Mapping[str, str]) -> Iterator[tuple[dict[str, str], Settings]]:
    """(the environment its services take, its settings) while Kafka, S3 and Postgres run."""
    env = {**os.environ, **settings, "REEL_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    s = load(env)
    up(s, with_services=False, say=lambda _m: None)
    try:
        yield env, s
    finally:
        down(s, say=lambda _m: None)
