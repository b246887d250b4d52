"""The worker loop, proven with real kills: each worker a separate OS process, real
broker, real object storage, SIGKILL of the process (group)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from reel.attempts import COMPLETED, FAILED, HANDED_BACK, STARTED
from reel.kafka import admin_client, consumer_config, group_lag, watermarks
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
    # Idle, the group's computed lag returns to 0 (the commit markers are stepped over).
    admin = admin_client(loop.settings)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lag = group_lag(admin, f"reel.{loop.stage}", loop.topic_in)
        if sum(lag.values()) == 0:
            break
        time.sleep(1)
    assert sum(lag.values()) == 0, lag
    # The loop's stall watch reads watermarks through the admin client: the same offsets a
    # consumer's own query gives, commit markers included (the output topic is transactional).
    reader = Consumer(consumer_config(loop.settings, f"it.{loop.run_id}.marks", "marks"))
    try:
        parts = [TopicPartition(loop.topic_out, p) for p in range(loop.partitions)]
        own = {(tp.topic, tp.partition): reader.get_watermark_offsets(tp, 10) for tp in parts}
    finally:
        reader.close()
    assert watermarks(admin, parts) == own
    assert sum(high for _low, high in own.values()) > 30  # 30 records and a marker after each transaction


def test_exactly_once_through_fault_points_and_random_kills(loop: LoopRun) -> None:
    n = 200
    loop.env.update(REEL_MAX_ATTEMPTS="50", LOOP_WORK_S="0.05")  # kills here are not poison
    loop.produce(range(n))
    rng = random.Random(20261128)
    plan = [f"{p}@{rng.randint(1, 3)}" for p in FAULT_POINTS for _ in range(3)]
    rng.shuffle(plan)
    armed = {slot: plan.pop() for slot in (0, 1)}
    for slot, fault in armed.items():
        loop.start(slot, fault)
    # Phase 1: every fault window, three times over, hit deterministically.
    deadline = time.monotonic() + 240
    while armed and time.monotonic() < deadline:
        for slot in list(armed):
            if loop.procs[slot].poll() is not None:
                del armed[slot]
                if plan:
                    armed[slot] = plan.pop()
                loop.start(slot, armed.get(slot, ""))
        time.sleep(0.1)
    assert not armed, f"fault points not reached: {armed}"
    # Phase 2: SIGKILL at random moments until at least 20 kills in all.
    while sum(loop.fault_hits().values()) + loop.external_kills < 20:
        time.sleep(rng.uniform(0.3, 1.5))
        loop.kill(rng.choice([0, 1]))
        for slot, proc in loop.procs.items():
            if proc.poll() is not None:
                loop.start(slot)
    # Phase 3: run to the end, restarting whatever dies.
    records = loop.wait_outputs(n, timeout=240, restart={})
    assert_exactly_once(records, n, loop)

    hits = loop.fault_hits()
    kills = sum(hits.values()) + loop.external_kills
    redelivered = sum(len(loop.markers(i)) - 1 for i in range(n))
    print(f"kills={kills} fault_hits={dict(hits)} external={loop.external_kills} redelivered_attempts={redelivered}")
    assert kills >= 20
    assert all(hits[p] >= 3 for p in FAULT_POINTS), hits
    # Every kill before the commit leaves its task to be redone by another attempt.
    assert redelivered >= hits["before-work"] + hits["mid-work"] + hits["after-produce"]
    assert max(r["attempt"] for r in records) > 1


def test_killed_worker_partitions_move_within_seconds(loop: LoopRun) -> None:
    loop.env.update(LOOP_WORK_S="0.5")
    loop.produce(range(30))
    a = loop.start(0, "mid-work@2")
    loop.start(1)
    a.wait(timeout=60)
    died = time.time()
    log = loop.tmp / f"worker-{loop.run_id}-1.log"
    moved_at = None
    deadline = time.monotonic() + 30
    while moved_at is None and time.monotonic() < deadline:
        for line in log.read_text().splitlines():  # B's own record of taking partitions
            rec = json.loads(line)
            when = datetime.fromisoformat(rec["ts"].replace("Z", "+00:00")).timestamp()
            if rec["msg"].startswith("assigned [") and rec["msg"] != "assigned []" and when >= died - 0.5:
                moved_at = when
                break
        time.sleep(0.2)
    assert moved_at is not None, "B never took A's partitions"
    session_s = int(loop.env["REEL_SESSION_TIMEOUT_MS"]) / 1000
    assert moved_at - died < session_s + 5, f"partitions moved after {moved_at - died:.1f}s"
    records = loop.wait_outputs(30, timeout=120)  # A is not restarted: B redoes its task
    assert_exactly_once(records, 30, loop)
    assert any(r["attempt"] == 2 for r in records)


def test_open_transaction_of_a_killed_worker_does_not_stall_readers(loop: LoopRun) -> None:
    loop.produce(range(10))  # few: the time measured is the stall, not B's backlog
    a = loop.start(0, "after-produce@2")  # dies with its outputs produced, uncommitted
    loop.start(1)
    a.wait(timeout=60)
    died = time.monotonic()
    records = loop.wait_outputs(10, timeout=60)
    visible_in = time.monotonic() - died
    txn_s = int(loop.env["REEL_TRANSACTION_TIMEOUT_MS"]) / 1000
    session_s = int(loop.env["REEL_SESSION_TIMEOUT_MS"]) / 1000
    assert visible_in < txn_s + session_s + 8, f"readers stalled {visible_in:.1f}s"
    assert_exactly_once(records, 10, loop)


def test_a_re_delivered_committed_input_is_not_redone(loop: LoopRun) -> None:
    """The consumer's position is not trusted: in one CI run librdkafka re-delivered an
    input after its output and offset were committed, and it was done twice. Here the
    worker rewinds its consumer after every commit; each input still runs once."""
    loop.produce(range(12))
    loop.start(0, LOOP_REWIND="1")
    records = loop.wait_outputs(12, timeout=90)
    assert_exactly_once(records, 12, loop)
    for i in range(12):
        assert [m.state for m in loop.markers(i)] == [COMPLETED], f"task {i} ran again"
    log = (loop.tmp / f"worker-{loop.run_id}-0.log").read_text()
    assert "re-delivered after we committed up to" in log  # the rewind happened and was caught


def _wait_running(loop: LoopRun, indices: range, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [i for i in indices if any(m.state == STARTED for m in loop.markers(i))]
        if len(running) >= count:
            return running
        time.sleep(0.2)
    raise AssertionError("tasks did not start")


def test_scale_out_does_not_redo_running_tasks(loop: LoopRun) -> None:
    loop.env.update(LOOP_WORK_S="3")
    loop.produce(range(12))
    loop.start(0)
    loop.start(1)
    _wait_running(loop, range(12), 2)
    third = loop.start(2)  # joins mid-task: a cooperative rebalance
    records = loop.wait_outputs(12, timeout=120)
    assert_exactly_once(records, 12, loop)
    for i in range(12):
        states = [m.state for m in loop.markers(i)]
        assert states == [COMPLETED], f"task {i} was redone or handed back: {states}"
    log = (loop.tmp / f"worker-{loop.run_id}-2.log").read_text()
    assert third.poll() is None and re.search(r'"msg": "assigned \[\d', log), "third never joined"


def test_a_member_joining_under_a_commit_does_not_cost_the_task(loop: LoopRun) -> None:
    """A worker has produced a task's outputs and taken the group's generation for its
    offsets (held there) when a member joins: the group moves to a new generation and the
    broker refuses the old one. The worker sends the same transaction again with the new
    one: the task is committed once and never redone (it used to abort and run again; seen
    in the autoscaling benchmark when a splitter scaled out)."""
    arm, armed = f"generation-{loop.run_id}", loop.tmp / "armed"
    armed.write_text(f"{arm} loop after-produce hold\n")
    loop.produce([0])
    worker = loop.start(0, REEL_FAULT_FILE=str(armed))
    deadline = time.monotonic() + 60
    while f"after-produce {worker.pid} {arm} held" not in loop.fault_log.read_text():
        assert time.monotonic() < deadline and worker.poll() is None, "the task never reached its commit"
        time.sleep(0.1)
    loop.start(1)
    _wait_log(loop.tmp / f"worker-{loop.run_id}-1.log", r'"msg": "assigned \[')  # the new generation is formed
    armed.write_text("")  # released: its offsets go out with the generation of before
    assert_exactly_once(loop.wait_outputs(1, timeout=60), 1, loop)
    _wait_completed(loop, 0)
    assert [m.state for m in loop.markers(0)] == [COMPLETED], "the task was redone"
    log = (loop.tmp / f"worker-{loop.run_id}-0.log").read_text()
    assert "ILLEGAL_GENERATION" in log and "sending it again" in log, "the refusal was not what was tested"


def test_partitions_revoked_mid_task_and_given_back_are_read_again(loop: LoopRun) -> None:
    """A member joins while the only worker runs a task (its partitions paused), takes
    some of them, and leaves after that task ended: the partitions come back to an idle
    worker, which must read them (librdkafka#1849 says a pause can outlive a revocation;
    here the worker's own resume after the task must not leave them paused)."""
    loop.produce([0], source_key="slow")  # 4 s
    loop.start(0)
    _wait_running(loop, range(1), 1)
    joiner = loop.start(1)
    joined = loop.tmp / f"worker-{loop.run_id}-1.log"
    _wait_log(joined, r'"msg": "assigned \[\d')  # it took partitions from the busy worker
    _wait_completed(loop, 0)  # the task ended, and resumed only what it still held
    joiner.send_signal(signal.SIGTERM)
    assert joiner.wait(timeout=60) == 0  # its partitions go back to the idle worker
    _wait_log(loop.tmp / f"worker-{loop.run_id}-0.log", r'"msg": "assigned \[\d', count=2)
    loop.produce(range(1, 25))  # on every partition
    assert_exactly_once(loop.wait_outputs(25, timeout=60), 25, loop)


def test_a_partition_left_paused_is_found_and_read(loop: LoopRun) -> None:
    """Records wait on partitions the client left paused (a lost resume): the idle worker
    notices within REEL_STALLED_S, resumes them once, and every task is done once."""
    loop.env.update(REEL_STALLED_S="3", LOOP_LEAK_PAUSE="once")
    loop.start(0)
    _wait_log(loop.tmp / f"worker-{loop.run_id}-0.log", r'"msg": "assigned \[\d')
    loop.produce(range(8))
    assert_exactly_once(loop.wait_outputs(8, timeout=60), 8, loop)
    log = (loop.tmp / f"worker-{loop.run_id}-0.log").read_text()
    assert re.search(r"records waiting \d+s, none read: resumed at 0", log), "the stall was not what moved it"


def test_a_worker_whose_partitions_stay_stuck_fails_liveness(loop: LoopRun) -> None:
    """Resumed and stuck again: the loop no longer counts as live, /healthz answers 503
    (an orchestrator restarts it), while /metrics still answers."""
    loop.env.update(REEL_STALLED_S="3", LOOP_LEAK_PAUSE="always")
    loop.start(0)
    log = loop.tmp / f"worker-{loop.run_id}-0.log"
    _wait_log(log, r'"msg": "assigned \[\d')
    port = int(re.search(r"/readyz on [\d.]+:(\d+)", log.read_text()).group(1))
    assert _status(port, "/healthz") == 200
    loop.produce(range(4))
    deadline = time.monotonic() + 60
    while _status(port, "/healthz") == 200:
        assert time.monotonic() < deadline, "still live with its records stuck"
        time.sleep(0.5)
    assert _status(port, "/healthz") == 503 and _status(port, "/metrics") == 200
    assert not loop.outputs()


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_log(path: Path, pattern: str, count: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, path.read_text())) < count:
        assert time.monotonic() < deadline, f"{pattern!r} not {count}x in {path.name}"
        time.sleep(0.2)


def _wait_completed(loop: LoopRun, index: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(m.state == COMPLETED for m in loop.markers(index)):
        assert time.monotonic() < deadline, f"task {index} did not complete"
        time.sleep(0.2)


def test_sigterm_finishes_the_running_task(loop: LoopRun) -> None:
    loop.env.update(LOOP_WORK_S="3")
    loop.produce(range(4))
    worker = loop.start(0)
    (running,) = _wait_running(loop, range(4), 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert [m.state for m in loop.markers(running)] == [COMPLETED]
    loop.env.update(LOOP_WORK_S="0")
    loop.start(1)
    assert_exactly_once(loop.wait_outputs(4, timeout=60), 4, loop)


def test_sigterm_past_the_drain_timeout_hands_the_task_back(loop: LoopRun) -> None:
    loop.env.update(LOOP_WORK_S="20", REEL_DRAIN_TIMEOUT_S="0.5")
    loop.produce(range(1))
    worker = loop.start(0)
    _wait_running(loop, range(1), 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert [m.state for m in loop.markers(0)] == [HANDED_BACK]
    loop.env.update(LOOP_WORK_S="0")
    loop.start(1)
    records = loop.wait_outputs(1, timeout=60)
    assert_exactly_once(records, 1, loop)
    assert [m.state for m in loop.markers(0)] == [HANDED_BACK, COMPLETED]
    assert records[0]["attempt"] == 1  # a hand-back is not a failure: the redo is no retry


def test_a_fenced_worker_exits_non_zero_and_its_task_is_done_once(loop: LoopRun) -> None:
    """A second process takes the same slot (as a restarted pod does while the old one is
    still alive): its init_transactions fences the first, whose commit then fails fatally;
    the first exits with code 2 instead of carrying on, and the task is done once."""
    loop.env.update(LOOP_WORK_S="4")
    loop.produce(range(1))
    old = loop.start(0)
    _wait_running(loop, range(1), 1)
    loop.env.update(LOOP_WORK_S="0")
    loop.start(0)  # same slot, same transactional.id
    assert old.wait(timeout=60) == 2
    log = (loop.tmp / f"worker-{loop.run_id}-0.log").read_text()
    assert '"msg": "fatal: producer:' in log and "fenced" in log.lower()
    assert_exactly_once(loop.wait_outputs(1, timeout=60), 1, loop)


def test_poison_task_is_dead_lettered_after_exactly_n_attempts(loop: LoopRun) -> None:
    loop.produce(range(20))
    loop.produce([20], source_key="poison")  # crashes its worker every time
    loop.produce_raw(b"\x00 not an avro record")
    loop.start(0)
    loop.start(1)
    records = loop.wait_outputs(20, timeout=180, restart={})
    deadline = time.monotonic() + 120
    dead: list[dict] = []
    while time.monotonic() < deadline and len(dead) < 2:
        for slot, proc in loop.procs.items():  # the supervisor's restarts
            if proc.poll() is not None:
                loop.start(slot)
        dead = loop.outputs(loop.topic_in + ".dlq")
        time.sleep(0.5)
    assert_exactly_once([r for r in loop.outputs() if r["segment_index"] != 20], 20, loop)
    assert not [r for r in records if r["segment_index"] == 20]
    kinds = {r["error_kind"]: r for r in dead}
    assert set(kinds) == {"attempts-exhausted", "malformed"} and len(dead) == 2
    poison = kinds["attempts-exhausted"]
    assert poison["failed_attempts"] == 3 and poison["segment_index"] == 20
    assert "3 attempts failed or died" in poison["reason"]
    assert poison["original_value"][:2] == b"\xc3\x01"
    assert [m.state for m in loop.markers(20)] == [STARTED] * 3  # exactly N attempts ran


@pytest.mark.parametrize(
    "source_key,says",
    [
        ("hang", ["FfmpegTimeout: ffmpeg timed out after 1s"]),  # killed at its timeout each time
        ("strange", ["MediaError: ffmpeg exited with", "No such filter: 'nosuchfilter'"]),  # not in the table
    ],
)
def test_an_ffmpeg_that_hangs_or_fails_the_same_way_is_escalated_after_n_attempts(
    loop: LoopRun, source_key: str, says: list[str]
) -> None:
    loop.produce(range(3))
    loop.produce([3], source_key=source_key)
    loop.start(0)
    records = loop.wait_outputs(3, timeout=120)
    deadline = time.monotonic() + 90
    while not (dead := loop.outputs(loop.topic_in + ".dlq")):
        assert time.monotonic() < deadline, "the failing task was never dead-lettered"
        time.sleep(0.5)
    assert_exactly_once([r for r in records if r["segment_index"] != 3], 3, loop)
    (letter,) = dead
    assert letter["error_kind"] == "attempts-exhausted" and letter["failed_attempts"] == 3
    assert all(words in letter["reason"] for words in says), letter["reason"]  # ffmpeg's own words
    assert [m.state for m in loop.markers(3)] == [FAILED] * 3  # each a counted failure, not a crash
    assert loop.procs[0].poll() is None  # the worker lived through it
    orphans = subprocess.run(["pgrep", "-f", "testsrc2=size=320x240:rate=25"], capture_output=True, text=True)
    assert orphans.stdout.strip() == "", "an ffmpeg outlived its timeout"


def test_an_input_ffmpeg_refuses_for_good_is_dead_lettered_on_its_first_attempt(loop: LoopRun) -> None:
    """A refusal of reel/refusals.py (here: no moov atom, invalid data): it would fail the
    same way on every attempt, so there is one, and the reason says it in words."""
    loop.produce([0], source_key="garbage")
    loop.start(0)
    deadline = time.monotonic() + 90
    while not (dead := loop.outputs(loop.topic_in + ".dlq")):
        assert time.monotonic() < deadline, "the refused task was never dead-lettered"
        time.sleep(0.3)
    (letter,) = dead
    assert letter["error_kind"] == "permanent" and letter["kind"] == "bad_input" and letter["failed_attempts"] == 1
    assert letter["reason"].startswith("the file is not media ffmpeg can read (invalid data) (ffmpeg exited with")
    assert "Invalid data found when processing input" in letter["reason"]  # ffmpeg's own line, kept
    assert [m.state for m in loop.markers(0)] == [FAILED]  # exactly one attempt ran


def test_a_paused_zombie_hands_its_task_back_and_never_commits(loop: LoopRun) -> None:
    """SIGSTOP a worker mid-task past the session timeout: the group gives its partition to
    the other member, which redoes the task; when the zombie wakes, its partition is lost, the
    task is cancelled and recorded as handed back, and its output is never committed."""
    loop.env.update(LOOP_WORK_S="3")
    loop.produce(range(1))
    zombie = loop.start(0)
    _wait_running(loop, range(1), 1)
    os.killpg(zombie.pid, signal.SIGSTOP)
    loop.start(1)
    session_s = int(loop.env["REEL_SESSION_TIMEOUT_MS"]) / 1000
    deadline = time.monotonic() + 60
    while not any(m.state == COMPLETED for m in loop.markers(0)):  # the other member redid it
        assert time.monotonic() < deadline
        time.sleep(0.3)
    time.sleep(session_s)
    os.killpg(zombie.pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while [m.state for m in loop.markers(0)] != [HANDED_BACK, COMPLETED]:
        assert time.monotonic() < deadline, [m.state for m in loop.markers(0)]
        time.sleep(0.3)
    time.sleep(3)  # a zombie commit, if any, would land by now
    records = loop.outputs()
    assert_exactly_once(records, 1, loop)
    assert records[0]["producer"] == f"{loop.stage}-1" and records[0]["attempt"] == 2
