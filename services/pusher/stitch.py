"""The stitch: every placed segment joined per rung with the audio, packaged as HLS when
asked for, and gated - all locally, under a scratch folder. What it made is returned as
typed files, so publishing never works out what a file is from its path."""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reel import gate, media, mp4
from reel.faults import fault_point
from reel.ladder import Profile, Rendition
from reel.parallel import in_threads
from reel.segment import SegmentTask
from reel.task import Deps, Task
from services.pusher.package import concat_list, hls_args, join_args, poster_args
from services.pusher.place import fetch
from services.pusher.playlist import Variant, bitrates, codec_string, master_playlist

log = logging.getLogger(__name__)


class GateFailed(Exception):
    """An output is not what a viewer should get: the video fails with this reason."""


@dataclass(frozen=True)
class OutputFile:
    path: Path
    rel: str  # under the video's folder in reel-outputs, e.g. hls/360p/seg_00001.ts
    kind: str  # mp4 | hls-master | hls-playlist | hls-segment | poster
    rung: str | None = None


@dataclass(frozen=True)
class Mp4:
    rendition: Rendition
    bitrate: int  # the video stream's average


@dataclass(frozen=True)
class Stitched:
    files: list[OutputFile]  # in path order: uploads and the manifest are bit-exact
    mp4s: dict[str, Mp4]
    duration: float
    codec: str


@dataclass(frozen=True)
class Audio:
    path: Path
    duration: float
    rates: tuple[int, int]  # peak and average bits per second of its HLS rendition (0 without)


def stitch(task: Task, deps: Deps, profile: Profile, rends: list[Rendition], tmp: Path) -> Stitched:
    """Join, mux, package and gate every output under tmp/out: every rung joined in one
    ffmpeg run, then gated and packaged two at a time, one per core."""
    ev = task.event
    seg = SegmentTask.of(ev)
    hls = "hls" in ev["formats"]  # HLS is packaged only when asked for
    out = tmp / "out"
    (out / "mp4").mkdir(parents=True)
    files: list[OutputFile] = []
    audio = _audio(deps, ev, profile, hls, tmp, files) if ev["has_audio"] else None
    names = [f"{r.name}/{i:05d}.mp4" for r in rends for i in range(ev["segment_count"])]
    began = time.monotonic()
    fetched = dict(zip(names, in_threads(lambda n: fetch(deps, ev, n, tmp / "parts" / n), names), strict=True))
    log.info("fetched %d parts in %.2fs", len(names), time.monotonic() - began)
    parts_of = {r.name: [fetched[f"{r.name}/{i:05d}.mp4"] for i in range(ev["segment_count"])] for r in rends}
    # The frame index where each segment starts, as the parts really are.
    counts = [_frames(part) for part in parts_of[rends[0].name][:-1]]
    joins = list(itertools.accumulate(counts, initial=0))
    _join(rends, parts_of, audio, tmp, seg.total_s)
    done = in_threads(
        lambda r: _rung(ev, profile, r, joins, audio, tmp, hls, files), rends, workers=2
    )  # in ladder order: the master playlist is bit-exact
    if hls:
        _master(out, [v for v, _ in done if v is not None], rends, audio, profile, files)
    top = out / "mp4" / f"{rends[0].name}.mp4"
    # A tenth in, at most 5 s, on a keyframe: the poster decodes one frame, not a GOP.
    gop_s = float(ev["gop_frames"] / seg.fps)
    at = math.floor(min(seg.total_s * 0.1, 5.0) / gop_s) * gop_s
    media.run_ffmpeg(poster_args(top, at, out / "poster.jpg"), timeout=60)
    files.append(OutputFile(out / "poster.jpg", "poster.jpg", "poster"))
    mp4s = {r.name: m for r, (_, m) in zip(rends, done, strict=True)}
    return Stitched(sorted(files, key=lambda f: f.rel), mp4s, seg.total_s, "hevc" if profile.hevc else "h264")


def _frames(part: Path) -> int:
    """A part's frame count from its sample table (read in Python: one ffprobe per part
    costs a small node about 0.3 s, and a video has dozens of parts), else from ffprobe."""
    samples = mp4.read_video_samples(mp4.file_reader(part))
    return len(samples) if samples is not None else len(media.packets(part))


def _audio(deps: Deps, ev: dict[str, Any], profile: Profile, hls: bool, tmp: Path, files: list[OutputFile]) -> Audio:
    path = fetch(deps, ev, "audio/audio.m4a", tmp / "audio.m4a")
    rates = (0, 0)
    if hls:
        folder = tmp / "out" / "hls" / "audio"
        folder.mkdir(parents=True)
        media.run_ffmpeg(hls_args(path, "a", folder, profile.hevc), timeout=300)
        rates = bitrates(folder / "index.m3u8")
        files += _hls_files(folder, "audio")
    return Audio(path, media.audio_duration(path), rates)


def _join(
    rends: list[Rendition], parts_of: dict[str, list[Path]], audio: Audio | None, tmp: Path, total_s: float
) -> None:
    """Every rung's segments joined, each with the audio, into out/mp4/RUNG.mp4: one ffmpeg run."""
    rungs = []
    for r in rends:
        listing = tmp / f"{r.name}.txt"
        listing.write_text(concat_list(parts_of[r.name]))
        rungs.append((listing, tmp / "out" / "mp4" / f"{r.name}.mp4"))
    media.run_ffmpeg(join_args(rungs, audio.path if audio else None), timeout=60 + total_s * len(rends))
    fault_point("mid-join")


def _rung(
    ev: dict[str, Any],
    profile: Profile,
    r: Rendition,
    joins: list[int],
    audio: Audio | None,
    tmp: Path,
    hls: bool,
    files: list[OutputFile],
) -> tuple[Variant | None, Mp4]:
    """One joined rung: gate it, package its HLS playlist (when HLS is asked for)."""
    out = tmp / "out"
    seg = SegmentTask.of(ev)
    mp4 = out / "mp4" / f"{r.name}.mp4"
    found = media.muxed_packets(mp4, with_audio=audio is not None)
    problems = gate.check_video(found.get("video", []), seg.fps, seg.total_frames, ev["gop_frames"], joins)
    if audio is not None:
        problems += gate.check_audio(found.get("audio", []), profile.audio.sample_rate, audio.duration, seg.fps)
    if problems:
        raise GateFailed(f"{r.name}.mp4: {'; '.join(problems)}")
    files.append(OutputFile(mp4, f"mp4/{r.name}.mp4", "mp4", r.name))
    made = Mp4(r, media.video_bit_rate(mp4))
    if not hls:
        return None, made
    v = media.probe(mp4).video  # the codec's profile and level, for the master playlist
    assert v is not None
    hls_dir = out / "hls" / r.name
    hls_dir.mkdir(parents=True)
    media.run_ffmpeg(hls_args(mp4, "v", hls_dir, profile.hevc), timeout=60 + seg.total_s)
    files += _hls_files(hls_dir, r.name)
    peak, avg = bitrates(hls_dir / "index.m3u8")
    codecs = codec_string("hevc" if profile.hevc else "h264", v.profile, v.level)
    if audio is not None:
        codecs += "," + codec_string("aac", "LC", 0)
        peak, avg = peak + audio.rates[0], avg + audio.rates[1]
    return Variant(f"{r.name}/index.m3u8", v.width, v.height, peak, avg, codecs), made


def _hls_files(folder: Path, rung: str) -> list[OutputFile]:
    """A rendition's playlist (we named it index.m3u8) and every segment ffmpeg wrote beside it."""
    return [
        OutputFile(p, f"hls/{rung}/{p.name}", "hls-playlist" if p.name == "index.m3u8" else "hls-segment", rung)
        for p in sorted(folder.iterdir())
    ]


def _master(
    out: Path,
    variants: list[Variant],
    rends: list[Rendition],
    audio: Audio | None,
    profile: Profile,
    files: list[OutputFile],
) -> None:
    """The master playlist, and the gate: it plays, and every rendition starts with its audio."""
    master = out / "hls" / "master.m3u8"
    master.write_text(master_playlist(variants, "audio/index.m3u8" if audio is not None else None))
    if media.probe(master).video is None:
        raise GateFailed("the HLS master playlist does not play")
    if audio is not None:
        starts = {r.name: media.first_pts(out / "hls" / r.name / "index.m3u8") for r in rends}
        audio_start = media.first_pts(out / "hls" / "audio" / "index.m3u8", "a:0")
        if problems := gate.check_hls_sync(starts, audio_start, profile.audio.sample_rate):
            raise GateFailed("; ".join(problems))
    files.append(OutputFile(master, "hls/master.m3u8", "hls-master"))
