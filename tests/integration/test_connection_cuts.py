"""Connections cut mid-task through a TCP proxy on loopback, for object storage and for
the broker: a short cut is ridden out in place (no re-queue; storage retries logged); a
longer one re-queues the task once, which then finishes; nothing lost or doubled."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from devstack import kafka
from devstack.procs import free_port, port_taken, stop
from reel.attempts import COMPLETED, Marker
from reel.retries import counted
from reel.settings import Settings
from tests.integration.loop_harness import LoopRun
from tests.integration.test_worker_loop import _wait_completed, _wait_running, assert_exactly_once
from tests.proxy import TcpProxy


@pytest.fixture
def loop(stack: Settings, stack_env: dict[str, str], tmp_path: Path) -> Iterator[LoopRun]:
    run = LoopRun(stack, {**stack_env, "REEL_MAX_ATTEMPTS": "5"}, tmp_path)
    yield run
    run.stop_all()


@pytest.fixture
def s3_proxy(stack: Settings) -> Iterator[TcpProxy]:
    proxy = TcpProxy(stack.s3_port)
    yield proxy
    proxy.close()


def cut_mid_task(loop: LoopRun, proxy: TcpProxy, cut_s: float, **worker_env: str) -> tuple[list[Marker], str]:
    """One task; the proxied connections cut for cut_s while it runs; the task's markers
    and its worker's log once its one output is there (checked exactly once)."""
    loop.produce(range(1))
    loop.start(0, **worker_env)
    _wait_running(loop, range(1), 1)
    time.sleep(1)
    proxy.cut()
    time.sleep(cut_s)
    proxy.restore()
    records = loop.wait_outputs(1, timeout=90, restart={})
    assert_exactly_once(records, 1, loop)
    _wait_completed(loop, 0)  # its marker is written just after the commit that shows the output
    markers = loop.markers(0)
    # Numbered by the attempts before it that failed or died: a hand-back is no retry.
    assert markers[-1].state == COMPLETED and records[0]["attempt"] == 1 + counted(markers[:-1]), markers
    return markers, (loop.tmp / f"worker-{loop.run_id}-0.log").read_text()


def test_a_short_storage_cut_is_retried_in_place(loop: LoopRun, s3_proxy: TcpProxy) -> None:
    loop.env.update(LOOP_WORK_S="6", REEL_STORAGE_RETRY_S="20")  # the task reads its object in a loop
    markers, log = cut_mid_task(loop, s3_proxy, 3, REEL_S3_ENDPOINT=f"127.0.0.1:{s3_proxy.port}")
    assert len(markers) == 1  # not re-queued
    assert "retrying in" in log  # the retry is on record


def test_a_long_storage_cut_re_queues_the_task_once_and_loses_nothing(loop: LoopRun, s3_proxy: TcpProxy) -> None:
    loop.env.update(LOOP_WORK_S="4", REEL_STORAGE_RETRY_S="2")
    markers, log = cut_mid_task(loop, s3_proxy, 8, REEL_S3_ENDPOINT=f"127.0.0.1:{s3_proxy.port}")
    assert len(markers) >= 2 and counted(markers) >= 1  # re-queued, then finished
    assert "retrying in" in log and "attempt failed" in log


# -- the broker: one of the test's own, advertising the proxy's port (clients reconnect
# -- to the advertised address, so only then does the proxy see all their traffic) ------
@pytest.fixture(scope="module")
def proxied_broker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, TcpProxy]]:
    port = next(p for p in range(free_port(), 65000) if not port_taken(p) and not port_taken(p + 1))
    proxy = TcpProxy(port)
    s = replace(
        stack,
        home=tmp_path_factory.mktemp("cut-broker"),
        kafka_port=port,
        kafka_advertised_port=proxy.port,
        kafka_bootstrap=f"127.0.0.1:{proxy.port}",
    )
    broker = kafka.start(s)
    yield s, proxy
    stop(broker.pid)
    proxy.close()


@pytest.fixture
def broker_loop(
    proxied_broker: tuple[Settings, TcpProxy], stack_env: dict[str, str], tmp_path: Path
) -> Iterator[LoopRun]:
    s = proxied_broker[0]
    # The stack's default 6 s session (the suite's 3 s leaves a 1 s heartbeat no room for a cut).
    env = {
        **stack_env,
        "REEL_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "LOOP_WORK_S": "8",
        "REEL_SESSION_TIMEOUT_MS": "6000",
    }
    run = LoopRun(s, env, tmp_path)
    yield run
    run.stop_all()


def test_a_short_broker_cut_is_ridden_out(broker_loop: LoopRun, proxied_broker: tuple[Settings, TcpProxy]) -> None:
    markers, _ = cut_mid_task(broker_loop, proxied_broker[1], 2)  # a third of the 6 s session
    assert len(markers) == 1  # not re-queued


def test_a_long_broker_cut_re_queues_the_task_and_loses_nothing(
    broker_loop: LoopRun, proxied_broker: tuple[Settings, TcpProxy]
) -> None:
    markers, _ = cut_mid_task(broker_loop, proxied_broker[1], 12)  # past the session: the group drops the member
    assert len(markers) >= 2  # re-queued, then finished


def test_storage_cut_after_a_committed_failure_leaves_the_worker_working(loop: LoopRun, s3_proxy: TcpProxy) -> None:
    """A video.failed is committed; object storage is cut before its tombstone is written
    (the worker is held at that point, then the cut lands): the worker says so and carries
    on with the next task. It used to die there, after its commit."""
    arm, armed = f"bury-{loop.run_id}", loop.tmp / "armed"
    armed.write_text(f"{arm} loop before-bury hold\n")
    loop.env.update(REEL_STORAGE_RETRY_S="1", LOOP_FAIL_VIDEO="1")
    loop.produce([0], source_key="refused")
    worker = loop.start(0, REEL_S3_ENDPOINT=f"127.0.0.1:{s3_proxy.port}", REEL_FAULT_FILE=str(armed))
    deadline = time.monotonic() + 60
    while f"before-bury {worker.pid} {arm} held" not in loop.fault_log.read_text():
        assert time.monotonic() < deadline and worker.poll() is None, "the failure was never committed"
        time.sleep(0.1)
    s3_proxy.cut()
    armed.write_text("")  # released: the tombstone's write meets the cut
    log = loop.tmp / f"worker-{loop.run_id}-0.log"
    while "not written" not in log.read_text():
        assert time.monotonic() < deadline and worker.poll() is None, log.read_text()[-2000:]
        time.sleep(0.2)
    s3_proxy.restore()
    loop.produce([1])
    records = loop.wait_outputs(1, timeout=60)  # the same worker, alive, does the next task
    assert [r["segment_index"] for r in records] == [1] and worker.poll() is None
    dead = [r for r in loop.outputs(loop.topic_in + ".dlq") if r["video_id"] == loop.video_id]
    failed = [r for r in loop.outputs("video.failed") if r["video_id"] == loop.video_id]
    assert len(dead) == 1 and dead[0]["kind"] == "bad_input" and len(failed) == 1
    assert failed[0]["reason"] == "the input is refused for good"
