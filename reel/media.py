"""ffprobe to a typed result, and an ffmpeg runner with progress, timeout and cancel.

ffmpeg runs in the caller's process group (a fault-injected SIGKILL of a worker's
group must take its ffmpeg too) and under `nice`, so a saturated machine still
leaves the worker's Kafka heartbeats room to run.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from reel import mp4
from reel.redact import redact
from reel.refusals import Verdict, classify

ADDRESS = re.compile(r" @ 0x[0-9a-f]+")  # "[mp4 @ 0x55d1…]": a pointer, in every line, saying nothing
TAIL_LINES = 4  # ffmpeg runs at -v error: its last few lines are the failure in its own words


# The demuxers of media files: an upload may be read by these, and by nothing that opens
# further URLs or files (HLS, DASH, concat lists, image sequences, tee: reel/refusals.py).
MEDIA_DEMUXERS = tuple(
    [
        "mov",
        "mp4",
        "m4a",
        "3gp",
        "3g2",
        "mj2",
        "matroska",
        "webm",
        "avi",
        "mpeg",
        "mpegts",
        "mpegvideo",
        "flv",
        "asf",
        "ogg",
        "nut",
        "mxf",
        "dv",
        "h264",
        "hevc",
        "m4v",
        "mjpeg",
        "ivf",
        "wav",
        "mp3",
        "aac",
        "ac3",
        "eac3",
        "flac",
        "gif",
        "png_pipe",
        "jpeg_pipe",
        "bmp_pipe",
        "webp_pipe",
        "tiff_pipe",
    ]
)


def upload_input(source: str, ca_file: str = "") -> list[str]:
    """The input options of anything a user uploaded: one of the media demuxers, and only
    the protocols that fetch the object itself, so nothing it names is ever opened. Over
    https the store's certificate is verified (ffmpeg does not by default), against
    ca_file when given, else the system's CAs."""
    protocols = "http,https,tcp,tls" if source.startswith(("http://", "https://")) else "file"
    tls = ["-tls_verify", "1", *(["-ca_file", ca_file] if ca_file else [])] if source.startswith("https://") else []
    return ["-format_whitelist", ",".join(MEDIA_DEMUXERS), "-protocol_whitelist", protocols, *tls, "-i", source]


# Where a stream copy may go, in order: MP4 keeps the rotation matrix; QuickTime carries what
# MP4 will not (MS-MPEG4, WMV 7/8, FLV1, Theora, FFV1, HuffYUV, Cinepak, PCM audio), matrix
# kept; Matroska carries the rest (VP8), without a rotation matrix (ffmpeg 5.1 writes none).
COPY_CONTAINERS = ("mp4", "mov", "matroska")


def copy_into(args_for: Callable[[str], list[str]], **run: Any) -> str:
    """A stream copy into the first of COPY_CONTAINERS that carries its streams (run_ffmpeg
    with args_for(container)); the container it went into."""
    for container in COPY_CONTAINERS:
        try:
            run_ffmpeg(args_for(container), **run)
            return container
        except MediaError as exc:
            if exc.verdict is None or exc.verdict.code != "container-cannot-carry" or container == "matroska":
                raise
    raise AssertionError("unreachable")


def flags(line: str) -> list[str]:
    """ffmpeg options written as on a command line, e.g. flags(f"-g {gop} -sc_threshold 0").
    Only for options and values without spaces: paths stay list items of their own."""
    return line.split()


class MediaError(Exception):
    """ffmpeg or ffprobe failed; the message carries the tool's own last lines, and
    `verdict` what they mean when no retry can change it (reel/refusals.py)."""

    def __init__(self, message: str, verdict: Verdict | None = None) -> None:
        super().__init__(message)
        self.verdict = verdict

    @classmethod
    def of(cls, what: str, stderr: str) -> MediaError:
        said = _last_lines(stderr)
        verdict = classify(said)
        return cls(f"{verdict.words} ({what}: {said})" if verdict else f"{what}: {said}", verdict)


class FfmpegTimeout(MediaError):
    pass


class FfmpegCancelled(MediaError):
    pass


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int
    height: int
    frame_rate: Fraction  # nominal (r_frame_rate)
    avg_frame_rate: Fraction
    start_time: float
    duration: float | None
    frames: int | None  # from the header, when the container says
    rotation: int  # degrees, from the display matrix
    sample_aspect: Fraction
    pix_fmt: str
    profile: str = ""  # codec profile, e.g. High
    level: int = 0  # codec level as ffprobe gives it, e.g. 40 (H.264 4.0) or 93 (HEVC 3.1)
    bit_rate: int | None = None  # the stream's own, when the container says (MP4 does)
    reorders: bool = False  # has B-frames: frames are decoded in another order than shown


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    channels: int
    sample_rate: int
    start_time: float
    duration: float | None


@dataclass(frozen=True)
class Probe:
    format_name: str
    start_time: float  # of the container: input -ss counts from here
    duration: float | None
    size: int | None
    bit_rate: int | None
    video: VideoStream | None
    audio: AudioStream | None


def _fraction(text: str | None) -> Fraction:
    try:
        num, _, den = (text or "0/1").partition("/")
        return Fraction(int(num), int(den or 1))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int(value: object) -> int | None:
    f = _float(value)
    return None if f is None else int(f)


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return int(side["rotation"]) % 360
    return int(stream.get("tags", {}).get("rotate", 0)) % 360


def parse_probe(data: dict) -> Probe:
    """Pure: ffprobe's JSON (-show_format -show_streams) to a Probe."""
    fmt = data.get("format", {})
    video = audio = None
    for s in data.get("streams", []):
        kind = s.get("codec_type")
        if kind == "video" and video is None and not s.get("disposition", {}).get("attached_pic"):
            video = VideoStream(
                index=int(s["index"]),
                codec=s.get("codec_name", "unknown"),
                width=int(s.get("width", 0)),
                height=int(s.get("height", 0)),
                frame_rate=_fraction(s.get("r_frame_rate")),
                avg_frame_rate=_fraction(s.get("avg_frame_rate")),
                start_time=_float(s.get("start_time")) or 0.0,
                duration=_float(s.get("duration")),
                frames=_int(s.get("nb_frames")),
                rotation=_rotation(s),
                sample_aspect=_fraction(s.get("sample_aspect_ratio", "1:1").replace(":", "/")) or Fraction(1),
                pix_fmt=s.get("pix_fmt", ""),
                profile=s.get("profile", ""),
                level=int(s.get("level", 0) or 0),
                bit_rate=_int(s.get("bit_rate")),
                reorders=bool(_int(s.get("has_b_frames")) or 0),
            )
        elif kind == "audio" and audio is None:
            audio = AudioStream(
                index=int(s["index"]),
                codec=s.get("codec_name", "unknown"),
                channels=int(s.get("channels", 0)),
                sample_rate=int(s.get("sample_rate", 0) or 0),
                start_time=_float(s.get("start_time")) or 0.0,
                duration=_float(s.get("duration")),
            )
    return Probe(
        format_name=fmt.get("format_name", ""),
        start_time=_float(fmt.get("start_time")) or 0.0,
        duration=_float(fmt.get("duration")),
        size=_int(fmt.get("size")),
        bit_rate=_int(fmt.get("bit_rate")),
        video=video,
        audio=audio,
    )


def probe(source: str | Path, timeout: float = 60.0, upload: bool = False, ca_file: str = "") -> Probe:
    """Headers only: format and streams. Never enumerates packets (over a URL that
    would read the whole file). upload: a user's file, opened as upload_input says."""
    given = upload_input(str(source), ca_file)[:-2] if upload else []  # ffprobe takes the input bare
    cmd = ["ffprobe", "-v", "error", *given, "-print_format", "json", "-show_format", "-show_streams", str(source)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FfmpegTimeout(f"ffprobe timed out after {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise MediaError.of("ffprobe failed", result.stderr)
    return parse_probe(json.loads(result.stdout or "{}"))


def _last_lines(text: str, n: int = TAIL_LINES) -> str:
    """ffmpeg's last words, with every URL it read reduced to bucket and key (the
    services hand it presigned URLs, whose query is a credential)."""
    lines = [ADDRESS.sub("", ln) for ln in text.strip().splitlines() if ln.strip()]
    return redact(" | ".join(lines[-n:])) or "(no output)"


def run_ffmpeg(
    args: Sequence[str],
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    on_progress: Callable[[float], None] | None = None,
    nice: int = 10,
) -> None:
    """Run ffmpeg with `args`; on_progress gets seconds of output written so far.

    Raises FfmpegTimeout past `timeout`, FfmpegCancelled when `cancel` is set, and
    MediaError with ffmpeg's last lines when it exits non-zero.
    """
    cmd = [*flags(f"nice -n {nice} ffmpeg -hide_banner -nostdin -nostats -v error -progress pipe:1"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    assert proc.stdout is not None and proc.stderr is not None
    err_thread = threading.Thread(target=lambda: tail.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    # In the caller's context: progress callbacks log (and fault-test) with the task's fields.
    ctx = contextvars.copy_context()
    out_thread = threading.Thread(target=ctx.run, args=(_read_progress, proc.stdout, on_progress), daemon=True)
    err_thread.start()
    out_thread.start()
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if cancel is not None and cancel.is_set():
                raise FfmpegCancelled("ffmpeg cancelled")
            if time.monotonic() > deadline:
                raise FfmpegTimeout(f"ffmpeg timed out after {timeout:.0f}s: {_last_lines(''.join(tail), 3)}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)  # returns the moment ffmpeg exits
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err_thread.join(timeout=2)
        out_thread.join(timeout=2)
    if proc.returncode != 0:
        raise MediaError.of(f"ffmpeg exited with {proc.returncode}", "".join(tail))


def _read_progress(stream: object, on_progress: Callable[[float], None] | None) -> None:
    for line in stream:  # type: ignore[attr-defined]
        key, _, value = line.strip().partition("=")
        if key == "out_time_us" and on_progress is not None and value.lstrip("-").isdigit():
            on_progress(max(0, int(value)) / 1e6)


@dataclass(frozen=True)
class Packet:
    pts: float
    dts: float
    duration: float
    key: bool


PACKET_FIELDS = "packet=pts_time,dts_time,duration_time,flags"


def packets(path: str | Path, stream: str = "v:0", timeout: float = 120.0) -> list[Packet]:
    """Every packet of one stream of a local file, in file order. Local files only:
    over a URL this reads the whole object."""
    cmd = [*flags(f"ffprobe -v error -select_streams {stream} -of json"), "-show_entries", PACKET_FIELDS, str(path)]
    return [_packet(p) for p in _ffprobe_json(cmd, timeout).get("packets", [])]


def video_packets(path: Path, timeout: float = 120.0) -> list[Packet]:
    """A local MP4's video packets from its sample table, read in Python; from ffprobe
    when the table says more than that reader models (mp4.video_packets)."""
    found = mp4.read_video_packets(mp4.file_reader(path))
    if found is None:
        return packets(path, timeout=timeout)
    return [Packet(pts, dts, duration, key) for pts, dts, duration, key in found]


def audio_packets(path: Path, timeout: float = 120.0) -> list[Packet]:
    """A local MP4/M4A's audio packets from its sample table (mp4.audio_packets), else
    from ffprobe: a full-length audio track has thousands, a small node's ffprobe took
    seconds to list them."""
    found = mp4.from_moov(mp4.file_reader(path), mp4.audio_packets)
    if found is None:
        return packets(path, "a:0", timeout=timeout)
    return [Packet(*p) for p in found]


def muxed_packets(path: Path, with_audio: bool, timeout: float = 120.0) -> dict[str, list[Packet]]:
    """A local MP4's packets of its first video and (with_audio) first audio stream
    ("video", "audio"), read from its sample table in Python; from one ffprobe when the
    table says more than the readers model (mp4.video_packets, mp4.audio_packets). A
    joined rung's ffprobe with packets cost a 0.2-core node 2 s."""

    def both(moov: bytes) -> tuple[list[Any], list[Any]] | None:
        video, audio = mp4.video_packets(moov), mp4.audio_packets(moov) if with_audio else []
        return (video, audio) if video is not None and audio is not None else None

    found = mp4.from_moov(mp4.file_reader(path), both)
    if found is None:
        return probe_with_packets(path, timeout)[1]
    return {"video": [Packet(*p) for p in found[0]], "audio": [Packet(*p) for p in found[1]]}


def audio_duration(path: Path, timeout: float = 60.0) -> float:
    """An MP4/M4A audio file's length: where its last packet ends (the sample table), else
    ffprobe's duration."""
    found = mp4.from_moov(mp4.file_reader(path), mp4.audio_packets)
    if found:
        return max(pts + duration for pts, _dts, duration, _key in found)
    return float(probe(path, timeout=timeout).duration or 0.0)


def video_bit_rate(path: Path, timeout: float = 60.0) -> int:
    """A local MP4's video bits per second, as ffprobe reports the stream's (the table's
    bytes over its duration), else ffprobe's."""
    found = mp4.from_moov(mp4.file_reader(path), mp4.bit_rate)
    if found is not None:
        return found
    v = probe(path, timeout=timeout).video
    return (v.bit_rate or 0) if v is not None else 0


def probe_with_packets(path: str | Path, timeout: float = 120.0) -> tuple[Probe, dict[str, list[Packet]]]:
    """A local file's format and streams, with the packets of its first video and first
    audio stream ("video", "audio"), from one ffprobe run: on a small node each run costs
    a few tenths of a second."""
    cmd = [
        *flags("ffprobe -v error -of json -show_format -show_streams -show_entries"),
        f"{PACKET_FIELDS},stream_index",
    ]
    found = _ffprobe_json([*cmd, str(path)], timeout)
    first: dict[int, str] = {}
    for st in found.get("streams", []):
        kind = st.get("codec_type")
        if kind in ("video", "audio") and kind not in first.values():
            first[st["index"]] = kind
    out: dict[str, list[Packet]] = {kind: [] for kind in first.values()}
    for p in found.get("packets", []):
        if (kind := first.get(p.get("stream_index", -1))) is not None:
            out[kind].append(_packet(p))
    return parse_probe(found), out


def _ffprobe_json(cmd: list[str], timeout: float) -> dict[str, Any]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise MediaError.of("ffprobe failed", result.stderr)
    found: dict[str, Any] = json.loads(result.stdout or "{}")
    return found


def _packet(p: dict[str, Any]) -> Packet:
    pts, dts = _float(p.get("pts_time")), _float(p.get("dts_time"))
    pts = pts if pts is not None else (dts or 0.0)
    dts = dts if dts is not None else pts
    return Packet(pts, dts, _float(p.get("duration_time")) or 0.0, "K" in p.get("flags", ""))


def first_pts(path: str | Path, stream: str = "v:0", timeout: float = 60.0) -> float:
    """The earliest presentation time among a stream's first packets (a playlist too)."""
    cmd = [*flags(f"ffprobe -v error -select_streams {stream} -read_intervals %+#8 -of json"), "-show_entries"]
    cmd += ["packet=pts_time", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    times = [_float(p.get("pts_time")) for p in json.loads(result.stdout or "{}").get("packets", [])]
    if result.returncode != 0 or not any(t is not None for t in times):
        raise MediaError.of(f"ffprobe read no packet of {stream}", result.stderr)
    return min(t for t in times if t is not None)


def frame_rate(video: VideoStream, cap: int = 60) -> Fraction:
    """The output frame rate: the nominal rate, capped at 60 (VFR becomes CFR at it)."""
    rate = video.frame_rate
    if rate <= 0 or rate > cap:
        rate = video.avg_frame_rate if 0 < video.avg_frame_rate <= cap else Fraction(cap)
    return rate
