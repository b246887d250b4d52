"""What a user would run instead of reel: one ffmpeg command with the encoder settings
reel uses for a rung (the benchmark times it, the tests compare quality against it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from reel.ladder import Profile, Rendition
from reel.media import flags


def rung_flags(profile: Profile, r: Rendition, gop: int) -> list[str]:
    """A rung's rate control and GOP, as reel's transcoder sets them."""
    rates = f"-b:v {r.bitrate} -maxrate {int(r.bitrate * 1.07)} -bufsize {2 * r.bitrate}"
    gops = f"-g {gop} -keyint_min {gop} -sc_threshold 0"
    return flags(f"-preset {profile.preset} -profile:v high -pix_fmt yuv420p {rates} {gops}")


def ladder_command(source: Path, profile: Profile, rends: list[Rendition], gop: int, out: Path) -> list[str]:
    """Decode once, every rung with the audio into its own MP4 (as reel is asked for)."""
    n = len(rends)
    graph = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";"
    graph += ";".join(f"[s{i}]scale={r.width}:{r.height}[o{i}]" for i, r in enumerate(rends))
    args = [*flags("ffmpeg -v error -i"), str(source), "-filter_complex", graph]
    for i, r in enumerate(rends):
        audio = flags(f"-c:a aac -b:a {profile.audio.bitrate} -ac 2 -movflags +faststart -y")
        args += [*flags(f"-map [o{i}] -map 0:a:0 -c:v {profile.codec}"), *rung_flags(profile, r, gop), *audio]
        args.append(str(out / f"{r.name}.mp4"))
    return args


def rung_command(source: Path, r: Rendition, profile: Profile, gop: int, out: Path) -> list[str]:
    """One rung, video only, with x264."""
    scale = f"scale={r.width}:{r.height},setsar=1"
    return [
        *flags("ffmpeg -v error -i"),
        str(source),
        "-vf",
        scale,
        *flags("-c:v libx264"),
        *rung_flags(profile, r, gop),
        "-an",
        "-y",
        str(out),
    ]


def psnr(encoded: Path | str, source: Path | str, width: int, height: int) -> float:
    """Average PSNR of `encoded` against the source scaled to its size (bicubic, square
    pixels), frame by frame: both start at 0, since the psnr filter pairs frames by time
    and a source whose first frame sits at 25 ms would be scored against the frame after."""
    start = "setpts=PTS-STARTPTS"
    graph = f"[1:v]{start},scale={width}:{height}:flags=bicubic,setsar=1[ref];[0:v]{start},setsar=1[enc];[enc][ref]psnr"
    inputs = ["-i", str(encoded), "-i", str(source)]
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", *inputs, "-lavfi", graph, *flags("-f null -")],
        capture_output=True,
        text=True,
        check=True,
    )
    m = re.search(r"PSNR .* average:([0-9.]+|inf)", out.stderr)
    if m is None:
        raise RuntimeError(f"ffmpeg printed no PSNR: {out.stderr[-500:]}")
    return float(m.group(1))
