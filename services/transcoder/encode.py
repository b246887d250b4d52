"""ffmpeg arguments for the transcoder (pure): an exact cut of a span, decoded once,
encoded into every rung in one run; and the audio, once, full length."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from reel.ladder import AudioSpec, Profile, Rendition
from reel.media import flags

BITEXACT = flags("-fflags +bitexact")  # repeatable bytes: upload parts can be reused


@dataclass(frozen=True)
class Cut:
    seek: float  # input -ss into the span (counts from the span's own start)
    first_at: float  # where the segment's first frame then lands on the output clock


def cut(segment_start: float, span_start: float, fps: Fraction) -> Cut:
    """Seek half a frame early so rounding never drops the boundary frame; at the very
    start of a span there is nothing before it, and the first frame lands earlier."""
    offset = segment_start - span_start
    seek = max(0.0, offset - 0.5 / float(fps))
    return Cut(seek, offset - seek)


def warm_start(fps: Fraction) -> str:
    """An encoder zone giving a segment's first half second three times the bits.

    One-pass ABR starts every segment with no history and spends too little on its
    first frames: on Big Buck Bunny at 360p the first GOP after a join got 545-686 kb/s
    of 800 and came out 3-5 dB below the same frames of one whole-file encode, and the
    keyframe's loss carries through the GOP. This zone won back 0.24-0.6 dB per segment
    (1080p to 360p) for ~1 % more bits; the rest of the segment still averages the target.
    """
    return f"zones=0,{max(1, round(float(fps) / 2)) - 1},b=3.0"


def video_codec_args(
    profile: Profile, r: Rendition, gop: int, rate_pass: tuple[int, Path] | None, fps: Fraction
) -> list[str]:
    """Encoder flags for one rung; rate_pass = (1 or 2, stats file) for a two-pass encode
    (which needs no warm start: its second pass knows the whole segment)."""
    rate, maxrate, bufsize = r.bitrate, int(r.bitrate * 1.07), r.bitrate * 2
    common = flags(f"-b:v {rate} -maxrate {maxrate} -bufsize {bufsize} -pix_fmt yuv420p -preset {profile.preset}")
    if profile.hevc:
        # ffmpeg's -threads does not bound x265's own pools: set them for bit-exact output.
        params = (
            f"pools=1:frame-threads=1:keyint={gop}:min-keyint={gop}:scenecut=0:"
            f"vbv-maxrate={maxrate // 1000}:vbv-bufsize={bufsize // 1000}:log-level=error"
        )
        params += f":pass={rate_pass[0]}:stats={rate_pass[1]}" if rate_pass else f":{warm_start(fps)}"
        return ["-c:v", "libx265", *common, "-tag:v", "hvc1", "-x265-params", params]
    passes = ["-pass", str(rate_pass[0]), "-passlogfile", str(rate_pass[1])] if rate_pass else []
    x264 = flags(f"-profile:v high -g {gop} -keyint_min {gop} -sc_threshold 0 -threads 1")
    return ["-c:v", "libx264", *common, *x264, *(passes or ["-x264-params", warm_start(fps)])]


def segment_runs(
    span: Path,
    at: Cut,
    frames: int,
    fps: Fraction,
    renditions: list[Rendition],
    profile: Profile,
    gop: int,
    outputs: list[Path],
) -> list[list[str]]:
    """The ffmpeg run(s) for a segment: decode once, every rung from it.

    Each segment restarts rate control. Over a short segment x264's one-pass ABR does
    not settle: 2 s segments of Big Buck Bunny at 360p came out at 438 kb/s for 600 and
    1.4 dB below one whole-file command; two passes gave 571 kb/s and +0.8 dB. Two passes
    cost about 40 % more CPU, so only segments shorter than two_pass_below_s get them.
    """
    n = len(renditions)
    # Constant frame rate on the output grid: after the input seek the segment's first
    # frame sits at at.first_at; the fps filter puts each frame on its nearest slot from
    # there (duplicating into gaps of a variable-rate or damaged source, dropping extras).
    # At the end of a file the fps filter drops a last frame whose duration it does not
    # know; tpad repeats it, and -frames:v takes exactly N either way.
    grid = f"fps=fps={fps.numerator}/{fps.denominator}:start_time={at.first_at:.6f},tpad=stop_mode=clone:stop=2"
    graph = [f"[0:v:0]{grid},setpts=PTS-STARTPTS,split={n}" + "".join(f"[s{i}]" for i in range(n))]
    graph += [f"[s{i}]scale={r.width}:{r.height},setsar=1[o{i}]" for i, r in enumerate(renditions)]
    head = [*flags(f"-threads 1 -ss {at.seek:.6f} -i"), str(span), "-filter_complex", ";".join(graph)]
    head += flags("-filter_complex_threads 1")
    two_pass = frames / float(fps) < profile.two_pass_below_s
    runs = []
    for rate_pass in (1, 2) if two_pass else (0,):
        args = list(head)
        for i, (r, out) in enumerate(zip(renditions, outputs, strict=True)):
            stats = (rate_pass, out.with_suffix(".pass")) if rate_pass else None
            target = flags("-f null -") if rate_pass == 1 else [*flags("-f mp4 -y"), str(out)]
            args += [*flags(f"-map [o{i}] -frames:v {frames} -an"), *video_codec_args(profile, r, gop, stats, fps)]
            args += [*BITEXACT, *flags("-flags:v +bitexact"), *target]
        runs.append(args)
    return runs


def audio_args(src: Path, offset: float, duration: float, spec: AudioSpec, out: Path) -> list[str]:
    """Encode the audio once. `offset` = audio start - video start (source seconds):
    the output timeline starts at the first video frame; aresample pads silence when
    audio starts late and trims what comes before the first frame."""
    chain = f"asetpts=PTS+({offset:.6f}/TB),aresample={spec.sample_rate}:async=1:first_pts=0"
    encode = flags(f"-t {duration:.6f} -c:a aac -b:a {spec.bitrate} -ac {spec.channels} -ar {spec.sample_rate}")
    head = [*flags("-threads 1 -i"), str(src), *flags("-map 0:a:0 -af"), chain, *encode, *BITEXACT]
    return [*head, *flags("-flags:a +bitexact -f mp4 -y"), str(out)]
