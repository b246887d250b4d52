"""The worker loop, proven with real kills: each worker a separate OS process, real
broker, real object storage, SIGKILL of the process (group)."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from reel.attempts import COMPLETED, HANDED_BACK, STARTED
from reel.kafka import group_lag
from reel.settings import Settings
from tests.integration.loop_harness import LoopRun

FAULT_POINTS = ["before-work", "mid-work", "after-produce", "after-commit"]


@pytest.fixture
def loop(stack: Settings, stack_env: dict[str, str], tmp_path: Path):
    env = {**stack_env, "REEL_TRANSACTION_TIMEOUT_MS": "5000", "REEL_MAX_ATTEMPTS": "3"}
    run = LoopRun(stack, env, tmp_path)
    yield run
    run.stop_all()


def assert_exactly_once(records: list[dict], expected: int, loop: LoopRun) -> None:
    counts = Counter(r["segment_index"] for r in records)
    assert sorted(counts) == list(range(expected)), "lost outputs"
    dups = {k: n for k, n in counts.items() if n > 1}
    assert not dups, f"duplicated outputs: {dups}"
    for r in records:  # the real work is there and intact
        assert loop.storage.get_bytes(r["span"]["bucket"], r["span"]["key"])


def test_tasks_flow_exactly_once(loop: LoopRun) -> None:
    loop.produce(range(30))
    loop.start(0)
    loop.start(1)
    records = loop.wait_outputs(30, timeout=90)
    assert_exactly_once(records, 30, loop)
    assert {r["attempt"] for r in records} == {1}
    assert {r["producer"] for r in records} <= {f"{loop.stage}-0", f"{loop.stage}-1"}
