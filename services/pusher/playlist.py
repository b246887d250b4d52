"""HLS master playlist and codec strings (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

H264_PROFILES = {"Baseline": 0x42, "Constrained Baseline": 0x42, "Main": 0x4D, "High": 0x64}


@dataclass(frozen=True)
class Variant:
    uri: str
    width: int
    height: int
    peak_bps: int  # rung's peak segment bitrate, audio's included
    average_bps: int
    codecs: str


def codec_string(codec: str, profile: str, level: int) -> str:
    """RFC 6381 codec string for the CODECS attribute."""
    if codec == "h264":
        constraint = 0x40 if profile == "Constrained Baseline" else 0
        return f"avc1.{H264_PROFILES.get(profile, 0x64):02x}{constraint:02x}{level:02x}"
    if codec == "hevc":
        return f"hvc1.1.6.L{level}.B0"  # Main profile, Main tier
    if codec == "aac":
        return "mp4a.40.2"
    raise ValueError(f"no codec string for {codec}")


def parse_media_playlist(text: str) -> list[tuple[float, str]]:
    """(EXTINF duration, URI) of every segment of a media playlist."""
    out, duration = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            out.append((duration, line))
            duration = None
    return out


def bitrates(playlist: Path) -> tuple[int, int]:
    """(peak, average) bits per second over a media playlist's segments."""
    segments = parse_media_playlist(playlist.read_text())
    sizes = [(d, (playlist.parent / uri).stat().st_size) for d, uri in segments]
    peak = max((8 * size / d for d, size in sizes if d > 0), default=0)
    total_d = sum(d for d, _ in sizes)
    average = 8 * sum(size for _, size in sizes) / total_d if total_d else 0
    return int(peak), int(average)


def master_playlist(variants: list[Variant], audio_uri: str | None) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio_uri:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,URI="{audio_uri}"'
        )
    for v in sorted(variants, key=lambda v: -v.peak_bps):
        attrs = [
            f"BANDWIDTH={v.peak_bps}",
            f"AVERAGE-BANDWIDTH={v.average_bps}",
            f'CODECS="{v.codecs}"',
            f"RESOLUTION={v.width}x{v.height}",
        ]
        if audio_uri:
            attrs.append('AUDIO="audio"')
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), v.uri]
    return "\n".join(lines) + "\n"
