"""Untidy inputs made with ffmpeg: each case is the arguments that make it (pure data)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from reel.media import flags

V = "testsrc2=size={size}:rate={rate}:duration={d}"
A = "sine=frequency=330:sample_rate=48000:duration={d}"
X264 = flags("-c:v libx264 -preset ultrafast -pix_fmt yuv420p")
AAC = flags("-c:a aac -b:a 96k")


def lavfi(video: str, audio: str | None = None) -> list[str]:
    args = ["-f", "lavfi", "-i", video]
    return args + (["-f", "lavfi", "-i", audio] if audio else [])


def case(size: str = "320x240", rate: str = "25", d: float = 6, audio: bool = True) -> list[str]:
    return lavfi(V.format(size=size, rate=rate, d=d), A.format(d=d) if audio else None)


# name -> (file name, ffmpeg arguments before the output)
GOOD: dict[str, tuple[str, list[str]]] = {
    "vfr": (
        "vfr.mp4",
        [*case(rate="30"), "-vf", "select='not(eq(mod(n\\,4)\\,1))'", "-fps_mode", "vfr", *X264, *AAC],
    ),
    "ntsc-29.97": ("ntsc.mp4", [*case(rate="30000/1001"), *X264, *AAC]),
    "film-23.976": ("film.mp4", [*case(rate="24000/1001"), *X264, *AAC]),
    "sparse-keyframes": ("sparse.mp4", [*case(d=12), *X264, "-g", "250", "-sc_threshold", "0", *AAC]),
    "single-keyframe": ("single.mp4", [*case(), *X264, "-g", "10000", "-sc_threshold", "0", *AAC]),
    "bframes-avi": (
        "bframes.avi",
        [*case(), "-c:v", "mpeg4", "-bf", "2", "-q:v", "4", "-c:a", "mp3", "-b:a", "96k"],
    ),
    "audio-early": (  # the first frame 0.5 s after the first sample (Matroska keeps it)
        "early.mkv",
        [*lavfi(V.format(size="320x240", rate=25, d=6), A.format(d=6.5)), "-vf", "setpts=PTS+0.5/TB", *X264, *AAC],
    ),
    "audio-short": (
        "ashort.mp4",
        [*lavfi(V.format(size="320x240", rate=25, d=6), A.format(d=3)), *X264, *AAC],
    ),
    "no-audio": ("silent.mp4", [*case(audio=False), *X264]),
    "surround-5.1": ("surround.mp4", [*case(), "-ac", "6", *X264, *AAC]),
    "anamorphic": ("anamorphic.mp4", [*case(size="352x288"), "-vf", "setsar=16/11", *X264, *AAC]),
    "rotated-90": ("rotated.mp4", [*case(size="320x180"), *X264, *AAC]),  # + a display matrix, below
    "odd-size": (
        "odd.mp4",
        [*case(), *flags("-vf scale=321:241 -c:v libx264 -preset ultrafast -pix_fmt yuv444p"), *AAC],
    ),
    "tiny-source": ("small.mp4", [*case(size="160x120"), *X264, *AAC]),
    "mpeg2-ps": ("mpeg2.mpg", [*case(), "-c:v", "mpeg2video", "-q:v", "4", "-c:a", "mp2", "-f", "vob"]),
    "mpeg2-ts": ("mpeg2.ts", [*case(), "-c:v", "mpeg2video", "-q:v", "4", "-c:a", "mp2"]),
    "mjpeg": (
        "mjpeg.avi",
        [*case(), "-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p", "-c:a", "pcm_s16le"],
    ),
    "vp9-webm": (
        "vp9.webm",
        [*case(), *flags("-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 300k -c:a libopus")],
    ),
    "hevc-mkv": (
        "hevc.mkv",
        [*case(), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", *AAC],
    ),
    "raw-h264": ("raw.h264", [*case(audio=False), *X264, "-f", "h264"]),
    "very-short": ("short.mp4", [*case(d=1), *X264, *AAC]),
    # Decided: a damaged middle comes out. The decoder conceals what it can, frames it
    # cannot decode are filled by repeating the previous one (docs/decisions.md).
    "corrupt-middle": ("corrupt.mp4", [*case(), *X264, *AAC, "-movflags", "+faststart"]),
}


def make(name: str, folder: Path) -> Path:
    file_name, args = GOOD[name]
    out = folder / file_name
    if not out.exists():
        subprocess.run(["ffmpeg", "-v", "error", *args, "-y", str(out)], check=True)
        if name == "corrupt-middle":  # 3 KB of noise in the middle of the media data
            data = bytearray(out.read_bytes())
            mid = len(data) // 2
            data[mid : mid + 3000] = random.Random(7).randbytes(3000)
            out.write_bytes(bytes(data))
        if name == "rotated-90":  # a phone's portrait video: 90 degrees in the display matrix
            plain = out.with_suffix(".plain.mp4")
            out.rename(plain)
            rotate = flags("-c copy -metadata:s:v:0 rotate=90 -y")
            subprocess.run(["ffmpeg", "-v", "error", "-i", str(plain), *rotate, str(out)], check=True)
    return out


# name -> (file name, how to make it, the reason video.failed must give)
BAD: dict[str, tuple[str, list[str] | bytes | None, str]] = {
    "image": ("still.png", ["-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1"], "still image"),
    "text": ("notes.mp4", b"this is not a video, just words\n" * 40, "not a readable video"),
    "random": ("noise.mp4", bytes(range(256)) * 64, "not a readable video"),
    "no-video": ("audio.m4a", ["-f", "lavfi", "-i", A.format(d=3), *AAC], "no video stream"),
    "too-long": ("long.mp4", [*case(size="64x64", d=70, audio=False), *X264], "over the limit"),
    "too-wide": ("wide.mp4", [*case(size="4200x64", d=1, audio=False), *X264], "over the limit"),
    "empty": ("empty.mp4", ["-f", "lavfi", "-i", "testsrc2", "-frames:v", "0", *X264], "zero duration"),
    "truncated": ("truncated.mp4", [*case(), *X264, *AAC, "-movflags", "+faststart"], "truncated"),
}


def make_bad(name: str, folder: Path) -> Path:
    file_name, how, _ = BAD[name]
    out = folder / file_name
    if isinstance(how, bytes):
        out.write_bytes(how)
    elif how is not None:
        subprocess.run(["ffmpeg", "-v", "error", *how, "-y", str(out)], check=True)
    if name == "truncated":  # the upload broke off halfway
        out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    return out
