"""The transcoder's gate reads a new segment's packets from its MP4 sample table, and the
pusher's gate a joined rung's video and audio packets: they must be ffprobe's, packet for
packet, on files ffmpeg writes - or, where the table says more than the readers model,
none at all (and the gate asks ffprobe)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reel import media
from reel.media import flags
from reel.mp4 import audio_packets, file_reader, from_moov, read_video_packets
from services.puller.handler import span_args, span_bounds
from services.pusher.package import join_args

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


@pytest.mark.parametrize("bframes", [0, 2])
def test_a_pulled_span_reads_on_its_sources_clock(tmp_path: Path, bframes: int) -> None:
    """As the puller cuts a span (source timestamps kept: an empty edit before the media),
    from a keyframe 3 s in: its packets, start and end are ffprobe's."""
    whole = make(tmp_path, "whole.mp4", f"{SOURCE} -c:v libx264 -preset veryfast -bf {bframes} -g 45")
    span = tmp_path / "span.mp4"
    subprocess.run(["ffmpeg", "-v", "error", *span_args(str(whole), 1.7, 0.5, span)], check=True)
    table = read_video_packets(file_reader(span))
    assert table is not None, "the reader gave up on a span"
    probed = media.packets(span)
    assert len(table) == len(probed) == 45  # from the keyframe at 1.5 s to 3 s (the source's end)
    for i, ((pts, dts, duration, key), p) in enumerate(zip(table, probed, strict=True)):
        assert (pts, dts, duration, key) == pytest.approx((p.pts, p.dts, p.duration, p.key), abs=1e-6), f"packet {i}"
    video = media.probe(span).video
    assert video is not None and video.duration is not None
    start, end = span_bounds(span)
    assert (start, end) == pytest.approx((video.start_time, video.start_time + video.duration), abs=1e-6)
    assert start == pytest.approx(1.5)


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


TONE = "-f lavfi -i sine=frequency=440:sample_rate=48000:duration=3"


def assert_same_audio(path: Path) -> None:
    table = audio_packets_of(path)
    assert table is not None, "the reader gave up on a file it models"
    probed = media.packets(path, "a:0")
    assert len(table) == len(probed) > 80
    for i, ((pts, dts, duration, _key), p) in enumerate(zip(table, probed, strict=True)):
        assert (pts, dts, duration) == pytest.approx((p.pts, p.dts, p.duration), abs=1e-6), f"packet {i}"
    assert media.audio_packets(path) == [media.Packet(*t) for t in table]
    # ffprobe reads the length from the movie header, in its timescale (milliseconds here).
    assert media.audio_duration(path) == pytest.approx(media.probe(path).duration, abs=1e-3)


def audio_packets_of(path: Path) -> list[tuple[float, float, float, bool]] | None:
    return from_moov(file_reader(path), audio_packets)


@pytest.mark.parametrize(
    "name,codec",
    [
        ("audio.m4a", "-c:a aac -b:a 96k -ac 2 -ar 48000"),  # as the audio task writes it: priming in an edit
        ("cut.m4a", "-t 2.01 -c:a aac -b:a 64k -ac 1 -ar 44100"),  # the last packet cut by the edit
        ("no-edit.mp4", "-c:a aac -use_editlist 0"),  # the priming played: no edit list
        ("mp3.mp4", "-c:a libmp3lame"),  # MP3 in MP4 is an mp4a entry too: a sample a packet
    ],
)
def test_audio_packets_from_the_table_are_ffprobes(tmp_path: Path, name: str, codec: str) -> None:
    assert_same_audio(make(tmp_path, name, f"{TONE} {codec}"))


def test_a_rung_joined_with_its_audio_reads_as_ffprobe_reads_it(tmp_path: Path) -> None:
    """The pusher's join (parts, concat demuxer, the audio muxed in): the gate's packets and
    the manifest's bit rate come from the table and must be ffprobe's."""
    parts = [make(tmp_path, f"p{i}.mp4", f"{SOURCE} -t 1.5 -c:v libx264 -preset veryfast -bf 2 -g 15") for i in (0, 1)]
    audio = make(tmp_path, "audio.m4a", f"{TONE} -c:a aac -b:a 96k")
    listing = tmp_path / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    joined = tmp_path / "joined.mp4"
    media.run_ffmpeg(join_args([(listing, joined)], audio), timeout=60)
    table = media.muxed_packets(joined, with_audio=True)
    _probe, probed = media.probe_with_packets(joined)
    for kind in ("video", "audio"):
        assert len(table[kind]) == len(probed[kind]) > 80
        for i, (t, p) in enumerate(zip(table[kind], probed[kind], strict=True)):
            assert (t.pts, t.dts, t.duration) == pytest.approx((p.pts, p.dts, p.duration), abs=1e-6), f"{kind} {i}"
            assert t.key == p.key or kind == "audio", f"{kind} {i}"  # ffprobe flags the priming packet discard
    video = media.probe(joined).video
    assert video is not None and media.video_bit_rate(joined) == video.bit_rate


def test_audio_the_reader_does_not_model_goes_to_ffprobe(tmp_path: Path) -> None:
    pcm = make(tmp_path, "pcm.mov", f"{TONE} -c:a pcm_s16le")  # ffmpeg reads PCM a chunk at a time
    assert audio_packets_of(pcm) is None
    assert media.audio_packets(pcm) == media.packets(pcm, "a:0")
    assert media.audio_duration(pcm) == pytest.approx(media.probe(pcm).duration)
    assert media.muxed_packets(pcm, with_audio=True) == media.probe_with_packets(pcm)[1]
