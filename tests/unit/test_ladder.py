import json
from fractions import Fraction
from pathlib import Path

import pytest

from reel.ladder import PROFILES_DIR, UnknownProfile, audio_share, display_size, load, renditions


def test_default_profile_is_the_four_rung_h264_ladder() -> None:
    p = load("default")
    assert p.codec == "libx264" and p.preset == "veryfast" and p.gop_seconds == 2
    assert [(r.height, r.bitrate) for r in p.rungs] == [
        (1080, 5_000_000),
        (720, 3_000_000),
        (480, 1_500_000),
        (360, 800_000),
    ]
    assert (p.audio.bitrate, p.audio.channels) == (128_000, 2)
    assert load("hevc").hevc


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(UnknownProfile, match="default"):
        load("ultra")
    with pytest.raises(UnknownProfile):
        load("../etc/passwd")


def test_never_upscale() -> None:
    r = renditions(load("default"), 1280, 720)
    assert [(x.name, x.width, x.height) for x in r] == [("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)]


def test_portrait_uses_the_short_side() -> None:
    w, h = display_size(1920, 1080, Fraction(1), 90)
    assert (w, h) == (1080, 1920)
    r = renditions(load("default"), w, h)
    assert (r[0].width, r[0].height) == (1080, 1920)


def test_non_square_pixels_are_applied_and_sizes_even() -> None:
    w, h = display_size(720, 576, Fraction(16, 11), 0)  # PAL 16:9 anamorphic
    assert (w, h) == (1047, 576)
    for x in renditions(load("default"), w, h):
        assert x.width % 2 == 0 and x.height % 2 == 0


def test_source_smaller_than_every_rung_keeps_its_size() -> None:
    r = renditions(load("default"), 320, 240)
    assert [(x.width, x.height, x.bitrate) for x in r] == [(320, 240, 800_000)]


def test_own_profiles_are_found_first_and_listed(tmp_path: Path) -> None:
    tiny = json.loads((PROFILES_DIR / "tiny.json").read_text())
    (tmp_path / "tiny.json").write_text(json.dumps({**tiny, "preset": "ultrafast"}))
    (tmp_path / "mine.json").write_text(json.dumps({**tiny, "name": "mine", "rungs": tiny["rungs"][:1]}))
    assert load("tiny", tmp_path).preset == "ultrafast"  # replaces the built-in
    assert load("tiny").preset == "veryfast"  # only where the folder is given
    assert [r.name for r in load("mine", tmp_path).rungs] == ["360p"]
    with pytest.raises(UnknownProfile, match="default, hevc, mine, tiny"):
        load("nope", tmp_path)
    with pytest.raises(UnknownProfile):
        load("../tiny", tmp_path)


def share(profile, width: int, height: int, **changes) -> float | None:
    import dataclasses

    p = dataclasses.replace(profile, **changes)
    return audio_share(p, renditions(p, width, height), width, height, Fraction(25))


def test_the_audios_share_follows_the_ladder() -> None:
    """Measured by CPU-seconds with the transcoder's own runs: 0.18 for the default ladder
    on a 360p source (one rung), 0.03 from 720p (three), 0.046 on two rungs at medium; the
    model comes within a third of each."""
    default = load("default")
    one_rung, three = share(default, 640, 360), share(default, 1280, 720)
    assert one_rung is not None and three is not None
    assert 0.12 < one_rung < 0.24 and 0.02 < three < 0.04
    medium = share(default, 640, 360, preset="medium")
    assert medium is not None and medium < one_rung  # a slower preset makes the video dearer
    assert share(default, 640, 360, preset="veryslow") == medium  # slower than measured: the slowest
    hevc = share(default, 640, 360, codec="libx265")  # x265 costs more a pixel than x264
    assert hevc is not None and hevc < one_rung
    assert share(default, 640, 360, codec="libvpx-vp9") is None  # not measured: the caller's fallback
