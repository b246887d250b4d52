"""Chaos benchmark: videos of diverse lengths through reel while random workers are
SIGKILLed, against the same videos undisturbed, in one run on the embedded stack.

Reports lost (videos that did not complete, or whose outputs differ from the undisturbed
run's by sha256), duplicated (a task's output committed more than once), dead-lettered
(with reasons), re-encoded media-seconds (transcoder attempts that died and were redone)
and the slowdown. Kills come every KILL_EVERY_S, longer than a segment's processing time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from devstack.clips import synthetic
from reel.attempts import COMPLETED, Attempts
from reel.contract import Registry
from reel.kafka import read_to_end
from reel.pipeline import PIPELINE, WORKER_KINDS
from reel.segment import SegmentTask
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait

LENGTHS_S = (6, 10, 14, 20, 30, 45)
KILL_EVERY_S = 5.0
KINDS = WORKER_KINDS
TASK_TOPICS = tuple(t for s in PIPELINE for t in s.outputs if t != "video.failed")  # a task's outputs


def make_clips(work: Path) -> list[Path]:
    out = []
    for n in LENGTHS_S:
        clip = work / f"chaos-{n}s.mp4"
        if not clip.exists():
            synthetic(clip, size="640x360", seconds=n)
        out.append(clip)
    return out


def run_all(settings: Settings, clips: list[Path]) -> tuple[dict[str, dict[str, Any]], float]:
    """Submit every clip at once and wait for each; returns ({clip: end event}, seconds)."""
    storage = Storage.from_settings(settings)
    t0 = time.monotonic()
    subs = {c.name: submit(settings, storage, c, "tiny", request_id=str(uuid.uuid4())) for c in clips}
    ends = {}
    for name, sub in subs.items():
        try:
            ends[name] = wait(settings, sub.video_id, sub.submitted_ms, timeout=900)
        except TimeoutError:
            ends[name] = {"topic": "timeout", "video_id": sub.video_id}
    return ends, time.monotonic() - t0


def killer(settings: Settings, stop: threading.Event, kills: Counter[str]) -> None:
    rng = random.Random(20261128)
    while not stop.wait(KILL_EVERY_S):
        state = json.loads((settings.home / "services.json").read_text())
        victims = [s for s in state if s["kind"] in KINDS and s["pid"]]
        victim = rng.choice(victims)
        try:
            os.killpg(victim["pid"], signal.SIGKILL)
            kills[victim["kind"]] += 1
        except ProcessLookupError:
            pass


def outputs_of(storage: Storage, end: dict[str, Any]) -> list[tuple[Any, ...]]:
    ref = end["manifest"]
    rows = json.loads(storage.get_bytes(ref["bucket"], ref["key"]))["outputs"]
    return sorted((r["kind"], r["rung"], r["sha256"]) for r in rows)


def audit(settings: Settings, ends: dict[str, dict[str, Any]], since_ms: int) -> dict[str, Any]:
    """Duplicates, dead letters and re-encoded seconds of these videos, from Kafka and the markers."""
    ids = {e["video_id"] for e in ends.values()}
    registry = Registry()
    topics = [
        *TASK_TOPICS,
        "segment.requested.dlq",
        "segment.pulled.dlq",
        "segment.transcoded.dlq",
        "video.requested.dlq",
    ]
    per_task: Counter[tuple[Any, ...]] = Counter()
    dead, transcoded = [], []
    for m in read_to_end(settings, topics, since_ms=since_ms):
        ev = registry.decode_for_topic(m.topic(), m.value())
        if ev["video_id"] not in ids:
            continue
        if m.topic().endswith(".dlq"):
            dead.append({"topic": m.topic(), "reason": ev["reason"]})
        else:
            per_task[(m.topic(), ev["video_id"], ev["track"], ev["segment_index"])] += 1
            if m.topic() == "segment.transcoded":
                transcoded.append(ev)
    attempts = Attempts(Storage.from_settings(settings), settings.bucket_work, "transcoder")
    redone = 0.0
    for ev in transcoded:
        lost_attempts = [m for m in attempts.markers(ev) if m.state != COMPLETED]
        seg = SegmentTask.of(ev)
        seconds = seg.length_s if ev["track"] == "video" else seg.total_s
        redone += len(lost_attempts) * seconds
    return {
        "duplicated": sum(n - 1 for n in per_task.values() if n > 1),
        "dead_lettered": dead,
        "re_encoded_media_seconds": round(redone, 1),
    }


def main(settings: Settings, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    storage = Storage.from_settings(settings)
    clips = make_clips(work)
    calm, calm_s = run_all(settings, clips)
    since_ms = int(time.time() * 1000)
    stop, kills = threading.Event(), Counter[str]()
    chaos_thread = threading.Thread(target=killer, args=(settings, stop, kills), daemon=True)
    chaos_thread.start()
    try:
        chaos, chaos_s = run_all(settings, clips)
    finally:
        stop.set()
        chaos_thread.join()
    lost = []
    for name, end in chaos.items():
        if end["topic"] != "video.completed":
            lost.append(f"{name}: {end['topic']} {end.get('reason', '')}".strip())
        elif calm[name]["topic"] == "video.completed" and outputs_of(storage, end) != outputs_of(storage, calm[name]):
            lost.append(f"{name}: outputs differ from the undisturbed run")
    found = audit(settings, chaos, since_ms - 5000)
    return {
        "videos": len(clips),
        "media_seconds": sum(LENGTHS_S),
        "kill_every_s": KILL_EVERY_S,
        "kills": dict(kills),
        "undisturbed_s": round(calm_s, 1),
        "chaos_s": round(chaos_s, 1),
        "slowdown": round(chaos_s / calm_s, 2),
        "lost": lost,
        **found,
    }


def report(r: dict[str, Any]) -> str:
    rows = [
        ("videos (media seconds)", f"{r['videos']} ({r['media_seconds']} s)"),
        ("kills", ", ".join(f"{k} {n}" for k, n in sorted(r["kills"].items())) or "none"),
        ("undisturbed / under kills", f"{r['undisturbed_s']} s / {r['chaos_s']} s ({r['slowdown']}x)"),
        ("lost", str(len(r["lost"])) + (f": {r['lost']}" if r["lost"] else "")),
        ("duplicated", str(r["duplicated"])),
        (
            "dead-lettered",
            str(len(r["dead_lettered"])) + "".join(f"\n    {d['topic']}: {d['reason']}" for d in r["dead_lettered"]),
        ),
        ("re-encoded media-seconds", str(r["re_encoded_media_seconds"])),
    ]
    return "\n".join(f"{k:28} {v}" for k, v in rows)
