from fractions import Fraction

from reel.gate import check_audio, check_hls_sync, check_video
from reel.media import Packet

FPS = Fraction(25)


def frames(n: int, gop: int = 50, step: float = 0.04, skip: int | None = None) -> list[Packet]:
    out, t = [], 0.0
    for i in range(n):
        if i == skip:
            t += step  # a missing frame: a gap
        out.append(Packet(pts=t, dts=t, duration=step, key=i % gop == 0))
        t += step
    return out


def test_a_clean_stream_passes() -> None:
    assert check_video(frames(150), FPS, 150, 50, joins=[0, 50, 100]) == []


def test_wrong_count_gap_and_missing_keyframe_are_named() -> None:
    assert "149 frames, expected 150" in check_video(frames(149), FPS, 150, 50)[0]
    assert any("a gap" in p for p in check_video(frames(150, skip=70), FPS, 150, 50))
    no_key = frames(150)
    no_key[50] = Packet(no_key[50].pts, no_key[50].dts, 0.04, False)
    assert any("frame 50 is not a keyframe" in p for p in check_video(no_key, FPS, 150, 50))


def test_backwards_timestamps_and_late_start() -> None:
    bad = frames(10)
    bad[3], bad[4] = bad[4], bad[3]
    assert "decode timestamps go backwards" in check_video(bad, FPS, 10, 50)
    late = [Packet(p.pts + 0.04, p.dts + 0.04, p.duration, p.key) for p in frames(10)]
    assert any("not 0" in p for p in check_video(late, FPS, 10, 50))


def test_audio_length_and_offset() -> None:
    aac = [Packet(i * 1024 / 48000, i * 1024 / 48000, 1024 / 48000, True) for i in range(282)]
    assert check_audio(aac, 48000, 6.0, FPS) == []  # 6.016 s: within one AAC frame
    assert any("lasts" in p for p in check_audio(aac[:200], 48000, 6.0, FPS))
    shifted = [Packet(p.pts + 0.1, p.dts + 0.1, p.duration, True) for p in aac]
    assert any("starts at" in p for p in check_audio(shifted, 48000, 6.0, FPS))
    assert check_audio([], 48000, 6.0, FPS) == ["no audio"]


def test_audio_shorter_than_the_video_passes_an_upper_bound_only() -> None:
    half = [Packet(i * 1024 / 48000, i * 1024 / 48000, 1024 / 48000, True) for i in range(141)]
    assert check_audio(half, 48000, 6.0, FPS, at_most=True) == []
    assert check_audio(half, 48000, 2.0, FPS, at_most=True) != []  # longer than the video


def test_hls_renditions_must_start_with_their_audio() -> None:
    # Measured: each rendition packaged on its own shifted the video by its B-frame delay.
    assert check_hls_sync({"360p": 1.466667, "240p": 1.466667}, 1.4, 48000) == [
        "HLS 360p starts +0.067s from its audio",
        "HLS 240p starts +0.067s from its audio",
    ]
    assert check_hls_sync({"360p": 1.0}, 0.978667, 48000) == []  # the priming: under one AAC frame
