"""What ffmpeg's words mean (pure): the refusals that a retry will never change.

ffmpeg fails the same way every time on an input it cannot read or a codec a container
cannot carry; retrying such a task only delays its failure (an MS-MPEG4 v3 AVI used to be
tried three times). Each entry of the table matches ffmpeg's own line and gives the
failure's kind and a reason in words; a failure no entry matches keeps the counted
attempts (reel/retries.py), since it may be the machine's or the network's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from reel.task import Kind

# Codec ids as ffmpeg prints them, as people know them (id: name).
CODEC_NAMES = dict(
    line.split(": ")
    for line in """msmpeg4v1: MS-MPEG4 v1 video
msmpeg4v2: MS-MPEG4 v2 video
msmpeg4v3: MS-MPEG4 v3 video
wmv1: WMV 7 video
wmv2: WMV 8 video
wmv3: WMV 9 video
flv1: Sorenson Spark (FLV1) video
theora: Theora video
ffv1: FFV1 video
huffyuv: HuffYUV video
cinepak: Cinepak video
vp8: VP8 video
vp6f: VP6 video
h261: H.261 video
h263: H.263 video
rv10: RealVideo 1 video
rv20: RealVideo 2 video
msvideo1: Microsoft Video 1
zmbv: Zip Motion Blocks video
snow: Snow video
pcm_s16le: PCM audio
pcm_s24le: PCM audio
pcm_u8: PCM audio
adpcm_ms: MS ADPCM audio
wmav2: WMA audio""".splitlines()
)
CONTAINERS = {"mp4": "MP4", "mov": "QuickTime (MOV)", "matroska": "Matroska", "ipod": "MP4"}
# Demuxers that open further URLs or files: never accepted for an upload.
NESTING = {
    "hls": "HLS playlists",
    "dash": "DASH manifests",
    "concat": "concat lists",
    "image2": "image sequences",
    "tee": "tee lists",
    "subfile": "subfile references",
    "data": "data URLs",
}


@dataclass(frozen=True)
class Verdict:
    code: str  # what happened, for code that reacts to it (e.g. another container)
    kind: Kind
    words: str


def _codec(m: re.Match[str]) -> str:
    return CODEC_NAMES.get(m["codec"].lower(), m["codec"])


def _cannot_carry(m: re.Match[str]) -> str:
    return f"{_codec(m)} cannot be copied into {CONTAINERS.get(m['muxer'], m['muxer'])}"


def _not_media(m: re.Match[str]) -> str:
    if m["demuxer"] in NESTING:
        return f"{NESTING[m['demuxer']]} are not accepted as sources; upload the media file itself"
    return f"the file is not a media file reel accepts (ffmpeg reads it as {m['demuxer']})"


@dataclass(frozen=True)
class Refusal:
    code: str
    pattern: re.Pattern[str]  # over ffmpeg's last lines
    kind: Kind
    words: Callable[[re.Match[str]], str]


AT = r"\[(?P<{}>\w+)(?: @ [^\]]*)?\] "  # "[mp4 @ 0x55…] ": who says it (the pointer is dropped, or not)
UNSUPPORTED, BAD = Kind.UNSUPPORTED_INPUT, Kind.BAD_INPUT
TABLE = (
    Refusal(
        "container-cannot-carry",
        re.compile(AT.format("muxer") + r"Could not find tag for codec (?P<codec>\w+)"),
        UNSUPPORTED,
        _cannot_carry,
    ),
    Refusal(
        "container-cannot-carry",
        re.compile(AT.format("muxer") + r"(?P<codec>\w+) muxing is currently not supp"),
        UNSUPPORTED,
        _cannot_carry,
    ),
    Refusal("not-media", re.compile(AT.format("demuxer") + "Format not on whitelist"), UNSUPPORTED, _not_media),
    Refusal(
        "not-media",
        re.compile(r"Protocol '(?P<protocol>\w+)' not on whitelist"),
        UNSUPPORTED,
        lambda m: f"the source names another location to open ({m['protocol']}); upload the media file itself",
    ),
    Refusal(
        "invalid-data",
        re.compile("Invalid data found when processing input"),
        BAD,
        lambda m: "the file is not media ffmpeg can read (invalid data)",
    ),
    Refusal(
        "no-stream",
        re.compile("Stream map '[^']*' matches no streams|does not contain any stream"),
        UNSUPPORTED,
        lambda m: "the file has no stream of the kind asked for",
    ),
    Refusal(
        "no-decoder",
        re.compile(r"Decoder \(codec (?P<codec>\w+)\) not found"),
        UNSUPPORTED,
        lambda m: f"ffmpeg has no decoder for {_codec(m)}",
    ),
    Refusal(
        "pixel-format",
        re.compile(r"Incompatible pixel format '(?P<fmt>\w+)'"),
        UNSUPPORTED,
        lambda m: f"pixel format {m['fmt']} is not supported",
    ),
)


def classify(text: str) -> Verdict | None:
    """The refusal ffmpeg's output says, or None when it says nothing a retry cannot change."""
    for refusal in TABLE:
        match = refusal.pattern.search(text)
        if match:
            return Verdict(refusal.code, refusal.kind, refusal.words(match))
    return None
