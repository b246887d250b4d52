from fractions import Fraction
from pathlib import Path

import pytest

from reel.ladder import load, renditions
from services.transcoder.encode import Cut, audio_args, cut, segment_runs, warm_start


def test_seek_is_half_a_frame_early_and_relative_to_the_span() -> None:
    at = cut(10.0, 8.5, Fraction(25))
    assert at.seek == pytest.approx(1.48) and at.first_at == pytest.approx(0.02)
    # At the start of a span nothing lies before the first frame: it lands at 0.
    assert cut(0.0, 0.0, Fraction(25)) == Cut(0.0, 0.0)


def runs_for(frames: int, profile: str = "default") -> list[list[str]]:
    p = load(profile)
    rends = renditions(p, 1920, 1080)
    outs = [Path(f"/w/{r.name}.mp4") for r in rends]
    return segment_runs(Path("/w/span"), Cut(1.0, 1 / 48), frames, Fraction(24), rends, p, 48, outs)


def test_one_decode_feeds_every_rung_with_fixed_gop() -> None:
    (run,) = runs_for(24 * 20)  # 20 s: one pass
    graph = run[run.index("-filter_complex") + 1]
    assert graph.startswith(
        "[0:v:0]fps=fps=24/1:start_time=0.020833,tpad=stop_mode=clone:stop=2,setpts=PTS-STARTPTS,split=4"
    )
    assert run.count("-frames:v") == 4 and run.count("480") >= 1
    assert run[run.index("-g") + 1] == "48" and run[run.index("-sc_threshold") + 1] == "0"
    assert run[run.index("-b:v") + 1] == "5000000" and run[run.index("-maxrate") + 1] == "5350000"
    assert run.count("-threads") == 5 and "+bitexact" in run
    assert run.index("-ss") < run.index("-i")  # input seeking


def test_short_segments_get_two_passes() -> None:
    first, second = runs_for(24 * 4)  # 4 s < 8 s
    assert first.count("-pass") == 4 and first[first.index("-pass") + 1] == "1"
    assert "null" in first and "/w/1080p.mp4" not in first
    assert second[second.index("-pass") + 1] == "2" and "/w/1080p.mp4" in second
    assert "-x264-params" not in first + second  # the second pass knows the whole segment


def test_one_pass_segments_spend_more_on_their_first_half_second() -> None:
    assert warm_start(Fraction(24)) == "zones=0,11,b=3.0"
    assert warm_start(Fraction(30000, 1001)) == "zones=0,14,b=3.0"
    assert warm_start(Fraction(1)) == "zones=0,0,b=3.0"  # at least the keyframe
    (run,) = runs_for(24 * 20)
    assert run.count("-x264-params") == 4 and run[run.index("-x264-params") + 1] == "zones=0,11,b=3.0"
    (hevc,) = runs_for(24 * 20, "hevc")
    assert hevc[hevc.index("-x265-params") + 1].endswith(":zones=0,11,b=3.0")


def test_hevc_is_tagged_hvc1_with_bounded_pools() -> None:
    (run,) = runs_for(24 * 20, "hevc")
    assert run[run.index("-tag:v") + 1] == "hvc1"
    assert "pools=1:frame-threads=1:keyint=48" in run[run.index("-x265-params") + 1]


def test_audio_is_aligned_to_the_first_video_frame() -> None:
    args = audio_args(Path("a.mka"), -0.25, 10.0, load("default").audio, Path("a.m4a"))
    chain = args[args.index("-af") + 1]
    assert "asetpts=PTS+(-0.250000/TB)" in chain and "first_pts=0" in chain
    assert args[args.index("-ac") + 1] == "2" and args[args.index("-t") + 1] == "10.000000"
