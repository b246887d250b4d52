"""The transcoder's gate reads a new segment's packets from its MP4 sample table: they
must be ffprobe's, packet for packet, on files ffmpeg writes - or, where the table says
more than the reader models, none at all (and the gate asks ffprobe)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reel import media
from reel.media import flags
from reel.mp4 import file_reader, read_video_packets

SOURCE = "-f lavfi -i testsrc2=size=320x240:rate=30:duration=3"


def make(tmp: Path, name: str, args: str) -> Path:
    out = tmp / name
    subprocess.run(["ffmpeg", "-v", "error", *flags(args), "-y", str(out)], check=True)
    return out


def assert_same(path: Path, reordered: bool = True) -> None:
    table = read_video_packets(file_reader(path))
    assert table is not None, "the reader gave up on a file it models"
    probed = media.packets(path)
    assert len(table) == len(probed) == 90
    for i, ((pts, dts, duration, key), p) in enumerate(zip(table, probed, strict=True)):
        assert (pts, dts, duration) == pytest.approx((p.pts, p.dts, p.duration), abs=1e-6), f"packet {i}"
        assert key == p.key, f"packet {i}"
    assert media.video_packets(path) == [media.Packet(*t) for t in table]
    # B-frames: presentation order differs from decode order, and the edit shifts both.
    assert any(pts != dts for pts, dts, _, _ in table) == reordered


@pytest.mark.parametrize(
    "name,codec",
    [
        ("bframes.mp4", "-c:v libx264 -preset veryfast -bf 2 -g 30"),  # composition offsets and an edit
        ("faststart.mp4", "-c:v libx264 -preset veryfast -bf 3 -g 15 -movflags +faststart"),
        ("intra.mp4", "-c:v libx264 -preset ultrafast -bf 0 -g 1"),  # every sample a keyframe
        ("hevc.mp4", "-c:v libx265 -preset ultrafast -x265-params log-level=error:bframes=3 -g 30 -tag:v hvc1"),
        ("quicktime.mov", "-c:v libx264 -preset veryfast -bf 2 -g 30"),
    ],
)
def test_packets_from_the_table_are_ffprobes(tmp_path: Path, name: str, codec: str) -> None:
    assert_same(make(tmp_path, name, f"{SOURCE} {codec}"), reordered="-bf 0" not in codec)


def test_a_joined_file_reads_like_its_parts(tmp_path: Path) -> None:
    """As the pusher joins parts: the concat demuxer, stream copy."""
    parts = [make(tmp_path, f"p{i}.mp4", f"{SOURCE} -t 1.5 -c:v libx264 -preset veryfast -bf 2 -g 15") for i in (0, 1)]
    listing = tmp_path / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    assert_same(make(tmp_path, "joined.mp4", f"-f concat -safe 0 -i {listing} -c copy"))


def test_what_the_reader_does_not_model_goes_to_ffprobe(tmp_path: Path) -> None:
    fragmented = make(
        tmp_path, "frag.mp4", f"{SOURCE} -c:v libx264 -preset veryfast -movflags +frag_keyframe+empty_moov"
    )
    assert read_video_packets(file_reader(fragmented)) is None
    assert len(media.video_packets(fragmented)) == 90  # from ffprobe
    # A stream copy from 1.1 s starts at the keyframe before it: an edit that cuts frames,
    # which ffmpeg's demuxer drops and this reader does not model.
    whole = make(tmp_path, "whole.mp4", f"{SOURCE} -c:v libx264 -preset veryfast -bf 2 -g 30")
    cut = make(tmp_path, "cut.mp4", f"-ss 1.1 -i {whole} -c copy")
    assert read_video_packets(file_reader(cut)) is None
    assert media.video_packets(cut) == media.packets(cut)
    assert read_video_packets(lambda at, n: b"not a video at all"[at : at + n]) is None
