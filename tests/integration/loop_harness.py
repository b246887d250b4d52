"""A small fleet of loop workers as separate OS processes, and what the tests read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from reel import PROJECT_ROOT
from reel.attempts import Marker
from reel.contract import Registry, envelope, task_key
from reel.kafka import admin_client, client_config, read_to_end
from reel.settings import Settings
from reel.storage import Storage

REGISTRY = Registry()


def segment_requested(video_id: str, index: int, source_key: str = "clip.mp4") -> dict[str, Any]:
    return {
        **envelope(video_id=video_id, producer="test", segment_index=index),
        "source": {"bucket": "reel-sources", "key": source_key, "etag": "e", "size": 1},
        "profile": "tiny",
        "formats": ["mp4"],
        "fps_num": 25,
        "fps_den": 1,
        "gop_frames": 50,
        "start_frame": index * 50,
        "frame_count": 50,
        "segment_count": 1000,
        "total_frames": 50_000,
        "video_start": 0.0,
        "has_audio": False,
        "display_width": 320,
        "display_height": 240,
    }


@dataclass
class LoopRun:
    """One test's topics, stage and fleet; everything named by a fresh run id."""

    settings: Settings
    env: dict[str, str]
    tmp: Path
    partitions: int = 8
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    external_kills: int = 0

    def __post_init__(self) -> None:
        self.stage = f"loop-{self.run_id}"
        self.topic_in = f"it.{self.run_id}.in"
        self.topic_out = f"it.{self.run_id}.out"
        self.fault_log = self.tmp / f"faults-{self.run_id}.log"
        self.fault_log.touch()
        admin = admin_client(self.settings)
        topics = [self.topic_in, self.topic_out, self.topic_in + ".dlq"]
        futures = admin.create_topics([NewTopic(t, num_partitions=self.partitions) for t in topics])
        for f in futures.values():
            f.result(30)
        self.storage = Storage.from_settings(self.settings)
        self.video_id = str(uuid.uuid4())  # as real video ids are: the loop refuses any other

    # -- inputs ----------------------------------------------------------------
    def produce(self, indices: range | list[int], source_key: str = "clip.mp4") -> None:
        """Inputs written transactionally, as the pipeline's own stages write them."""
        p = Producer({**client_config(self.settings), "transactional.id": f"test-{uuid.uuid4()}"})
        p.init_transactions(30)
        p.begin_transaction()
        for i in indices:
            rec = segment_requested(self.video_id, i, source_key)
            value = REGISTRY.encode("reel.events.SegmentRequested", rec)
            p.produce(self.topic_in, key=task_key(self.video_id, "video", i).encode(), value=value)
        p.commit_transaction(30)

    def produce_raw(self, value: bytes) -> None:
        p = Producer({**client_config(self.settings)})
        p.produce(self.topic_in, key=b"garbage", value=value)
        p.flush(10)

    # -- the fleet ---------------------------------------------------------------
    def start(self, slot: int, fault: str = "", **extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            **self.env,
            "REEL_SLOT": str(slot),
            "REEL_FAULT": fault,
            "REEL_FAULT_LOG": str(self.fault_log),
            "LOOP_STAGE": self.stage,
            "LOOP_IN": self.topic_in,
            "LOOP_OUT": self.topic_out,
            **extra,
        }
        log = open(self.tmp / f"worker-{self.run_id}-{slot}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.loop_worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[slot] = proc
        return proc

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.external_kills += 1

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def fault_hits(self) -> Counter[str]:
        return Counter(line.split()[0] for line in self.fault_log.read_text().splitlines())

    # -- what came out -----------------------------------------------------------
    def outputs(self, topic: str | None = None) -> list[dict[str, Any]]:
        """Every committed record of the output topic, decoded (a read_committed reader)."""
        msgs = read_to_end(self.settings, [topic or self.topic_out])
        return [REGISTRY.decode(m.value()) for m in msgs]

    def wait_outputs(
        self, expected: int, timeout: float, restart: dict[int, str] | None = None
    ) -> list[dict[str, Any]]:
        """Poll until `expected` distinct outputs; restart dead workers (as the supervisor
        does) with the fault spec in `restart`, if given."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if restart is not None:
                for slot, proc in list(self.procs.items()):
                    if proc.poll() is not None:
                        self.start(slot, restart.get(slot, ""))
            records = self.outputs()
            if len({r["segment_index"] for r in records}) >= expected:
                return records
            time.sleep(0.5)
        raise AssertionError(f"timed out with {len(self.outputs())} of {expected} outputs")

    def markers(self, index: int) -> list[Marker]:
        from reel.attempts import Attempts

        event = {
            "video_id": self.video_id,
            "generation": 0,
            "track": "video",
            "segment_index": index,
        }
        return Attempts(self.storage, self.settings.bucket_work, self.stage).markers(event)
