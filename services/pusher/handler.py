"""segment.transcoded -> segment.uploaded, and at the last segment: join, package,
gate, upload -> video.completed (or video.failed when the gate says no).

Keyed by video, so one pusher at a time owns a video's assembly. Which segments
are in lives in object storage (`placed/`), so a restarted pusher needs nothing
from memory.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from reel import gate, ladder, media
from reel.contract import media_seconds
from reel.faults import fault_point
from reel.ladder import Profile, Rendition
from reel.parallel import in_threads
from reel.scratch import scratch
from reel.settings import Settings
from reel.storage import ObjectRef, Storage
from reel.worker import Output, Permanent, Stage, Task, fail_video
from services.pusher.package import concat_list, hls_args, mp4_args, poster_args
from services.pusher.playlist import Variant, bitrates, codec_string, master_playlist


@dataclass(frozen=True)
class Deps:
    settings: Settings
    storage: Storage


class GateFailed(Exception):
    pass


def placed_prefix(ev: dict[str, Any]) -> str:
    return f"{ev['video_id']}/{ev['generation']}/placed/"


def placed_key(ev: dict[str, Any], rung: str) -> str:
    part = "audio.m4a" if ev["track"] == "audio" else f"{ev['segment_index']:05d}.mp4"
    return f"{placed_prefix(ev)}{rung}/{part}"


def fps_of(ev: dict[str, Any]) -> Fraction:
    return Fraction(ev["fps_num"], ev["fps_den"])


def expected_parts(ev: dict[str, Any], rends: list[Rendition]) -> set[str]:
    keys = {f"{r.name}/{i:05d}.mp4" for r in rends for i in range(ev["segment_count"])}
    return keys | ({"audio/audio.m4a"} if ev["has_audio"] else set())


def handle(task: Task, deps: Deps) -> list[Output]:
    ev = task.event
    profile = ladder.load(ev["profile"], deps.settings.profiles_dir)
    work = deps.settings.bucket_work

    def place(r: dict[str, Any]) -> dict[str, Any]:
        # The transcoder checked the segment before uploading it; the bytes are checked
        # against their sha256 when the join fetches them.
        dest = deps.storage.copy(ObjectRef.from_record(r["object"]), work, placed_key(ev, r["rung"]))
        fault_point("mid-place")
        return {**r, "object": dest.as_record()}

    placed = in_threads(place, ev["renditions"])
    uploaded = {**task.envelope("segment.uploaded"), "profile": ev["profile"],
                "segment_count": ev["segment_count"], "renditions": placed}  # fmt: skip
    outputs = [Output("segment.uploaded", ev["video_id"], uploaded)]
    rends = ladder.renditions(profile, ev["display_width"], ev["display_height"])
    have = {k[len(placed_prefix(ev)) :] for k in deps.storage.list(work, placed_prefix(ev))}
    if expected_parts(ev, rends) <= have:
        outputs.append(assemble(task, deps, profile, rends))
    return outputs


def assemble(task: Task, deps: Deps, profile: Profile, rends: list[Rendition]) -> Output:
    ev = task.event
    try:
        with scratch(deps.settings, "stitch") as tmp:
            files = build(task, deps, profile, rends, tmp)
            outputs = upload(task, deps, files, tmp / "out")
    except GateFailed as exc:
        return failed(task, f"stitch gate: {exc}")
    record = {**task.envelope("video.completed", segment_index=None, track="video"),
              "manifest": outputs["manifest"], "outputs": outputs["list"], "callback_url": None}  # fmt: skip
    return Output("video.completed", ev["video_id"], record)


def failed(task: Task, reason: str) -> Output:
    record = {**task.envelope("video.failed", segment_index=None, track="video"),
              "stage": "pusher", "reason": reason, "detail": None, "callback_url": None}  # fmt: skip
    return Output("video.failed", task.event["video_id"], record)


def _fetch(deps: Deps, ev: dict[str, Any], name: str, dest: Path) -> Path:
    ref = deps.storage.ref(deps.settings.bucket_work, placed_prefix(ev) + name)
    return deps.storage.get_file(ref, dest)


def build(task: Task, deps: Deps, profile: Profile, rends: list[Rendition], tmp: Path) -> dict[str, Any]:
    """Join, mux, package and gate every output locally under tmp/out. The rungs are
    independent (stream copies, probes, playlists): two at a time, one per core."""
    ev = task.event
    duration = ev["total_frames"] / float(fps_of(ev))
    hls = "hls" in ev["formats"]  # HLS is packaged only when asked for
    out = tmp / "out"
    (out / "mp4").mkdir(parents=True)
    audio = _fetch(deps, ev, "audio/audio.m4a", tmp / "audio.m4a") if ev["has_audio"] else None
    audio_peak = audio_avg = 0
    if audio is not None and hls:
        (out / "hls" / "audio").mkdir(parents=True)
        media.run_ffmpeg(hls_args(audio, "a", out / "hls" / "audio", profile.hevc), timeout=300)
        audio_peak, audio_avg = bitrates(out / "hls" / "audio" / "index.m3u8")
    names = [f"{r.name}/{i:05d}.mp4" for r in rends for i in range(ev["segment_count"])]
    fetched = dict(zip(names, in_threads(lambda n: _fetch(deps, ev, n, tmp / "parts" / n), names), strict=True))
    parts_of = {r.name: [fetched[f"{r.name}/{i:05d}.mp4"] for i in range(ev["segment_count"])] for r in rends}
    # The frame index where each segment starts, as the parts really are.
    counts = in_threads(lambda part: len(media.packets(part)), parts_of[rends[0].name][:-1])
    joins = list(itertools.accumulate(counts, initial=0))
    audio_duration = _duration(audio) if audio is not None else 0.0

    def rung(r: Rendition) -> tuple[Variant | None, dict[str, Any]]:
        return _rung(ev, profile, r, parts_of[r.name], joins, audio, audio_duration, (audio_peak, audio_avg),
                     tmp, hls)  # fmt: skip

    done = in_threads(rung, rends, workers=2)  # in ladder order: the master playlist is bit-exact
    if hls:
        master = out / "hls" / "master.m3u8"
        variants = [v for v, _ in done if v is not None]
        master.write_text(master_playlist(variants, "audio/index.m3u8" if audio is not None else None))
        hls_probe = media.probe(master)  # the gate: the master plays ...
        if hls_probe.video is None:
            raise GateFailed("the HLS master playlist does not play")
        if audio is not None:  # ... and every rendition in step with the audio
            starts = {r.name: media.first_pts(out / "hls" / r.name / "index.m3u8") for r in rends}
            audio_start = media.first_pts(out / "hls" / "audio" / "index.m3u8", "a:0")
            if problems := gate.check_hls_sync(starts, audio_start, profile.audio.sample_rate):
                raise GateFailed("; ".join(problems))
    top = out / "mp4" / f"{rends[0].name}.mp4"
    media.run_ffmpeg(poster_args(top, min(duration * 0.1, 5.0), out / "poster.jpg"), timeout=60)
    mp4s = {r.name: m for r, (_, m) in zip(rends, done, strict=True)}
    return {"mp4s": mp4s, "duration": duration, "codec": "hevc" if profile.hevc else "h264", "audio": audio}


def _rung(
    ev: dict[str, Any], profile: Profile, r: Rendition, parts: list[Path], joins: list[int],
    audio: Path | None, audio_duration: float, audio_rates: tuple[int, int], tmp: Path, hls: bool,
) -> tuple[Variant | None, dict[str, Any]]:  # fmt: skip
    """One rung: join its segments with the audio, gate it, package its HLS playlist
    (when HLS is asked for)."""
    out = tmp / "out"
    fps, total = fps_of(ev), ev["total_frames"]
    duration = total / float(fps)
    concat = tmp / f"{r.name}.txt"
    concat.write_text(concat_list(parts))
    mp4 = out / "mp4" / f"{r.name}.mp4"
    media.run_ffmpeg(mp4_args(concat, audio, mp4), timeout=60 + duration)
    fault_point("mid-join")
    problems = gate.check_video(media.packets(mp4), fps, total, ev["gop_frames"], joins)
    if audio is not None:
        problems += gate.check_audio(media.packets(mp4, "a:0"), profile.audio.sample_rate, audio_duration, fps)
    if problems:
        raise GateFailed(f"{r.name}.mp4: {'; '.join(problems)}")
    v = media.probe(mp4).video
    assert v is not None
    mp4_rung = {"rendition": r, "path": mp4, "bitrate": v.bit_rate or 0}  # the video stream's average
    if not hls:
        return None, mp4_rung
    hls_dir = out / "hls" / r.name
    hls_dir.mkdir(parents=True)
    media.run_ffmpeg(hls_args(mp4, "v", hls_dir, profile.hevc), timeout=60 + duration)
    peak, avg = bitrates(hls_dir / "index.m3u8")
    codecs = codec_string("hevc" if profile.hevc else "h264", v.profile, v.level)
    if audio is not None:
        codecs += "," + codec_string("aac", "LC", 0)
    variant = Variant(f"{r.name}/index.m3u8", v.width, v.height, peak + audio_rates[0], avg + audio_rates[1], codecs)
    return variant, mp4_rung


def _duration(path: Path) -> float:
    probe = media.probe(path)
    return float(probe.duration or 0.0)


def upload(task: Task, deps: Deps, files: dict[str, Any], out: Path) -> dict[str, Any]:
    """Upload the outputs (resumable multipart for large files) and the manifest."""
    ev = task.event
    bucket, vid = deps.settings.bucket_outputs, ev["video_id"]
    formats = set(ev["formats"])
    listed: list[dict[str, Any]] = []
    manifest_rows = []
    files_out = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        kind = _kind(rel)
        if (kind == "mp4" and "mp4" not in formats) or (kind.startswith("hls") and "hls" not in formats):
            continue
        files_out.append((path, rel, kind))

    def put(item: tuple[Path, str, str]) -> ObjectRef:
        ref = deps.storage.put_file(bucket, f"{vid}/{item[1]}", item[0])
        fault_point("mid-upload")
        return ref

    refs = in_threads(put, files_out)  # many small HLS segments: in parallel
    for (path, rel, kind), ref in zip(files_out, refs, strict=True):
        rung = path.stem if kind == "mp4" else (rel.split("/")[1] if kind in ("hls-playlist", "hls-segment") else None)
        if kind in ("mp4", "hls-master", "hls-playlist", "poster"):
            listed.append({"kind": kind, "rung": rung, "object": ref.as_record()})
        row: dict[str, Any] = {"kind": kind, "rung": rung, "key": ref.key, "size": ref.size, "sha256": ref.sha256}
        if kind == "mp4":
            m = files["mp4s"][rung]
            r = m["rendition"]
            row |= {"codec": files["codec"], "width": r.width, "height": r.height, "target_bitrate": r.bitrate,
                    "bitrate": m["bitrate"], "duration": files["duration"]}  # fmt: skip
        manifest_rows.append(row)  # every object: a download can check each one
    manifest = {"video_id": vid, "generation": ev["generation"], "profile": ev["profile"],
                "duration": files["duration"], "playback": playback(deps.settings, vid, formats),
                "outputs": manifest_rows}  # fmt: skip
    mref = deps.storage.put_bytes(bucket, f"{vid}/manifest.json", json.dumps(manifest, indent=2).encode())
    listed.append({"kind": "manifest", "rung": None, "object": mref.as_record()})
    return {"manifest": mref.as_record(), "list": listed}


def playback(settings: Settings, video_id: str, formats: set[str]) -> dict[str, str] | None:
    """Where the video plays, for as long as the outputs stay: behind a public base URL
    the stored master itself; else the tracker's stable route, which redirects to freshly
    signed links (a signed link written here would expire)."""
    if "hls" not in formats:
        return None
    if settings.outputs_base_url:
        return {"hls": f"{settings.outputs_base_url.rstrip('/')}/{video_id}/hls/master.m3u8"}
    return {"hls": f"{settings.tracker_url}/videos/{video_id}/play.m3u8"}


def _kind(rel: str) -> str:
    if rel.startswith("mp4/"):
        return "mp4"
    if rel == "hls/master.m3u8":
        return "hls-master"
    if rel.startswith("hls/") and rel.endswith("index.m3u8"):
        return "hls-playlist"
    if rel.startswith("hls/"):
        return "hls-segment"
    return "poster" if rel == "poster.jpg" else "other"


def make_stage(settings: Settings, storage: Storage) -> Stage:
    deps = Deps(settings, storage)
    return Stage("pusher", "segment.transcoded", lambda t: handle(t, deps),
                 on_dead_letter=fail_video("pusher"), media_seconds=media_seconds)  # fmt: skip


__all__ = ["make_stage", "handle", "Permanent"]
