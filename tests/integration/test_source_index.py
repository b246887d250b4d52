"""The splitter's reading of a source's sample table, against files ffmpeg writes and
the real S3 server's range reads."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from reel.media import flags
from reel.mp4 import file_reader, read_video_samples
from reel.settings import Settings
from reel.storage import Storage

CLIP = flags(
    "-f lavfi -i testsrc2=size=320x240:rate=24:duration=4 -f lavfi -i sine=frequency=440:duration=4 "
    "-c:v libx264 -preset ultrafast -bf 2 -g 30 -c:a aac"
)


def make(tmp: Path, name: str, *extra: str) -> Path:
    out = tmp / name
    subprocess.run(["ffmpeg", "-v", "error", *CLIP, *extra, "-y", str(out)], check=True)
    return out


def ffprobe_sizes(path: Path) -> list[int]:
    probe = flags("ffprobe -v error -select_streams v:0 -show_entries packet=size -of csv=p=0")
    out = subprocess.run([*probe, str(path)], capture_output=True, text=True, check=True)
    return [int(x) for x in out.stdout.split()]


@pytest.mark.parametrize(
    "name,extra", [("tail.mp4", ()), ("faststart.mp4", ("-movflags", "+faststart")), ("quicktime.mov", ())]
)
def test_samples_match_ffprobe_packets(tmp_path: Path, name: str, extra: tuple[str, ...]) -> None:
    path = make(tmp_path, name, *extra)
    samples = read_video_samples(file_reader(path))
    assert samples is not None
    assert [size for _, size in samples] == ffprobe_sizes(path)  # decode order, every frame
    times = [t for t, _ in samples]
    assert times[0] == 0.0 and times == sorted(times)
    assert times[-1] == pytest.approx(95 / 24, abs=1e-6)  # 96 frames at 24 fps


def test_no_table_means_no_samples(tmp_path: Path) -> None:
    fragmented = make(tmp_path, "frag.mp4", "-movflags", "+frag_keyframe+empty_moov")
    assert read_video_samples(file_reader(fragmented)) is None
    data = make(tmp_path, "cut.mp4").read_bytes()
    assert read_video_samples(lambda at, n: data[: len(data) // 2][at : at + n]) is None  # truncated: no moov
    assert read_video_samples(lambda at, n: b"not a video at all"[at : at + n]) is None


def test_samples_are_read_by_range_from_storage(storage: Storage, stack: Settings, tmp_path: Path) -> None:
    path = make(tmp_path, "tail.mp4")
    ref = storage.put_file(stack.bucket_sources, f"index-test/{uuid.uuid4()}.mp4", path)
    reads: list[tuple[int, int]] = []

    def read(at: int, n: int) -> bytes:
        reads.append((at, n))
        return storage.get_range(ref.bucket, ref.key, at, n)

    samples = read_video_samples(read)
    assert samples is not None and [s for _, s in samples] == ffprobe_sizes(path)
    # Box headers and the moov: a small share of the file, never the media.
    assert sum(n for _, n in reads) < path.stat().st_size / 4
    assert storage.get_range(ref.bucket, ref.key, path.stat().st_size + 10, 16) == b""


def test_a_busy_half_weighs_more(storage: Storage, stack: Settings, tmp_path: Path) -> None:
    """The splitter's own path: the source's samples read from storage, the plan weighed."""
    from fractions import Fraction

    from reel import media
    from services.splitter.handler import Deps, source_samples
    from services.splitter.plan import segment_costs, split_evenly

    path = tmp_path / "calm-then-busy.mp4"
    graph = (
        "color=c=gray:size=320x240:rate=24:duration=4[calm];"
        "testsrc2=size=320x240:rate=24:duration=4,noise=alls=60:allf=t[busy];"
        "[calm][busy]concat=n=2:v=1[v]"
    )
    encode = flags("-map [v] -c:v libx264 -preset ultrafast -g 48 -y")
    subprocess.run(["ffmpeg", "-v", "error", "-filter_complex", graph, *encode, str(path)], check=True)
    ref = storage.put_file(stack.bucket_sources, f"index-test/{uuid.uuid4()}.mp4", path)
    src = {"bucket": ref.bucket, "key": ref.key}
    samples = source_samples(Deps(stack, storage, lambda: []), src, media.probe(path))
    segments = split_evenly(192, 48, 2)  # the calm 4 s and the busy 4 s
    calm, busy = segment_costs(segments, Fraction(24), samples)
    assert busy > 1.5 * calm and calm + busy == pytest.approx(192)


def test_damaged_tables_never_raise_or_run_away(tmp_path: Path) -> None:
    """Truncated and bit-flipped headers: samples or None, in bounded reads and memory."""
    import random

    data = make(tmp_path, "fuzz.mp4", "-movflags", "+faststart").read_bytes()
    moov_end = data.index(b"mdat")
    rnd = random.Random(7)
    for i in range(1500):
        d = bytearray(data[: rnd.randrange(len(data))] if i % 3 == 0 else data)
        for _ in range(rnd.randrange(1, 12)):
            at = rnd.randrange(min(len(d), moov_end) or 1)
            if d:
                d[at] = rnd.randrange(256)
        reads = 0

        def read(at: int, n: int, d: bytearray = d) -> bytes:
            nonlocal reads
            reads += 1
            return bytes(d[at : at + n])

        samples = read_video_samples(read)
        assert samples is None or len(samples) <= 10_000_000
        assert reads <= 65
