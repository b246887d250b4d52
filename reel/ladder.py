"""Encoding profiles (data files in reel/profiles/, or an operator's own folder,
REEL_PROFILES_DIR, whose files replace built-ins of the same name) and the ladder a
source gets.

Shared by the splitter (validates the profile), the transcoder (what to encode)
and the pusher (how to package it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

PROFILES_DIR = Path(__file__).parent / "profiles"


class UnknownProfile(ValueError):
    pass


@dataclass(frozen=True)
class Rung:
    name: str
    height: int
    bitrate: int  # bits per second


@dataclass(frozen=True)
class AudioSpec:
    codec: str
    bitrate: int
    channels: int
    sample_rate: int


@dataclass(frozen=True)
class Profile:
    name: str
    codec: str  # ffmpeg encoder: libx264 | libx265
    preset: str
    gop_seconds: float
    two_pass_below_s: float  # shorter segments get two passes: one-pass ABR has no time to settle
    rungs: tuple[Rung, ...]
    audio: AudioSpec

    @property
    def hevc(self) -> bool:
        return self.codec == "libx265"


@dataclass(frozen=True)
class Rendition:
    """A rung as it applies to one source: output size in square pixels."""

    name: str
    width: int
    height: int
    bitrate: int


def _dirs(own_dir: str | Path) -> list[Path]:
    return [Path(own_dir), PROFILES_DIR] if own_dir else [PROFILES_DIR]


def available(own_dir: str | Path = "") -> list[str]:
    return sorted({p.stem for d in _dirs(own_dir) for p in d.glob("*.json")})


def load(name: str, own_dir: str | Path = "") -> Profile:
    """A profile by name; `own_dir` (REEL_PROFILES_DIR) is searched first."""
    found = [d / f"{name}.json" for d in _dirs(own_dir) if (d / f"{name}.json").is_file()]
    if not name or "/" in name or name.startswith(".") or not found:
        raise UnknownProfile(f"unknown profile {name!r}; known: {', '.join(available(own_dir))}")
    path = found[0]
    raw = json.loads(path.read_text())
    return Profile(
        name=raw["name"],
        codec=raw["codec"],
        preset=raw["preset"],
        gop_seconds=float(raw["gop_seconds"]),
        two_pass_below_s=float(raw.get("two_pass_below_s", 0)),
        rungs=tuple(Rung(**r) for r in raw["rungs"]),
        audio=AudioSpec(**raw["audio"]),
    )


def even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def display_size(width: int, height: int, sample_aspect: Fraction, rotation: int) -> tuple[int, int]:
    """The picture a viewer sees: non-square pixels stretched, then rotation applied."""
    w = width * (sample_aspect if sample_aspect > 0 else 1)
    h = Fraction(height)
    if rotation % 180 == 90:
        w, h = h, w
    return int(round(w)), int(round(h))


def renditions(profile: Profile, display_w: int, display_h: int) -> list[Rendition]:
    """Rungs no taller than the picture's short side (never upscale); a source smaller
    than every rung gets one rendition at its own size with the lowest rung's bitrate."""
    portrait = display_h > display_w
    short = min(display_w, display_h)
    fit = [r for r in profile.rungs if r.height <= short] or [
        Rung(f"{even(short)}p", even(short), profile.rungs[-1].bitrate)
    ]
    out = []
    for rung in fit:
        long_side = even(rung.height * max(display_w, display_h) / short)
        w, h = (rung.height, long_side) if portrait else (long_side, rung.height)
        out.append(Rendition(rung.name, even(w), even(h), rung.bitrate))
    return out


# Milliseconds of one core an encoder spends per megapixel of output frame, by preset, and
# a decoder per megapixel of source frame; one run of the transcoder at -threads 1, measured
# on these machines for 360p and 720p ladders (the slower presets cost more a pixel at 720p:
# x264 fast 17-26). Slower presets than a codec's slowest here cost more still.
ENCODE_MS_PER_MEGAPIXEL = {
    "libx264": {"ultrafast": 2.0, "superfast": 5.0, "veryfast": 9.5, "faster": 15.0, "fast": 20.0, "medium": 22.0},
    "libx265": {"ultrafast": 18.0, "veryfast": 37.0},
}
DECODE_MS_PER_MEGAPIXEL = 4.5
AUDIO_MS_PER_SECOND = 13.0  # AAC, stereo at 48 kHz, 96-128 kb/s: 11-15 measured


def audio_share(profile: Profile, rends: list[Rendition], source_w: int, source_h: int, fps: Fraction) -> float | None:
    """What the audio task costs against the video it goes with, second for second: a
    ladder of more and larger rungs, or a slower preset, makes the video dearer and the
    audio's share smaller (one 360p rung at ultrafast 0.4, at medium 0.11; three rungs
    from 720p at veryfast 0.03). A preset slower than any measured is taken as the slowest
    measured (the audio's share then comes out high, and its lane carries less video);
    None for a codec not measured."""
    presets = ENCODE_MS_PER_MEGAPIXEL.get(profile.codec)
    if not presets:
        return None
    per_mp = presets.get(profile.preset, max(presets.values()))
    out_mp = sum(r.width * r.height for r in rends) / 1e6
    video_ms = DECODE_MS_PER_MEGAPIXEL * source_w * source_h / 1e6 + per_mp * out_mp
    return AUDIO_MS_PER_SECOND / (float(fps) * video_ms)
