"""Publishing a stitched video: every output uploaded (resumable multipart for large
files), then the manifest that lists each object with its size and sha256."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reel import keys
from reel.faults import fault_point
from reel.parallel import in_threads
from reel.settings import Settings
from reel.storage import ObjectRef
from reel.task import Deps, Task
from services.pusher.stitch import OutputFile, Stitched

# The outputs video.completed names (every HLS segment is in the manifest only).
LISTED = ("mp4", "hls-master", "hls-playlist", "poster")


@dataclass(frozen=True)
class Published:
    manifest: ObjectRef
    listed: list[dict[str, Any]]  # the outputs of video.completed, the manifest last


def publish(task: Task, deps: Deps, stitched: Stitched) -> Published:
    ev = task.event
    bucket, tenant, vid = deps.settings.bucket_outputs, ev["tenant"], ev["video_id"]
    formats = set(ev["formats"])
    # The MP4s are always made (HLS is cut from them); they are kept only when asked for.
    files = [f for f in stitched.files if not (f.kind == "mp4" and "mp4" not in formats)]

    def put(f: OutputFile) -> ObjectRef:
        ref = deps.storage.put_file(bucket, keys.output(tenant, vid, f.rel), f.path)
        fault_point("mid-upload")
        return ref

    refs = in_threads(put, files)  # many small HLS segments: in parallel
    listed = [
        {"kind": f.kind, "rung": f.rung, "object": ref.as_record()}
        for f, ref in zip(files, refs, strict=True)
        if f.kind in LISTED
    ]
    rows = [_row(f, ref, stitched) for f, ref in zip(files, refs, strict=True)]  # every object
    manifest = {
        "video_id": vid,
        "tenant": tenant,
        "generation": ev["generation"],
        "profile": ev["profile"],
        "duration": stitched.duration,
        "playback": playback(deps.settings, tenant, vid, formats),
        "outputs": rows,
    }
    mref = deps.storage.put_bytes(bucket, keys.manifest(tenant, vid), json.dumps(manifest, indent=2).encode())
    return Published(mref, [*listed, {"kind": "manifest", "rung": None, "object": mref.as_record()}])


def _row(f: OutputFile, ref: ObjectRef, stitched: Stitched) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": f.kind, "rung": f.rung, "key": ref.key, "size": ref.size, "sha256": ref.sha256}
    if f.kind == "mp4":
        assert f.rung is not None
        mp4 = stitched.mp4s[f.rung]
        r = mp4.rendition
        row |= {
            "codec": stitched.codec,
            "width": r.width,
            "height": r.height,
            "target_bitrate": r.bitrate,
            "bitrate": mp4.bitrate,
            "duration": stitched.duration,
        }
    return row


def playback(settings: Settings, tenant: str, video_id: str, formats: set[str]) -> dict[str, str] | None:
    """Where the video plays, for as long as the outputs stay: behind a public base URL
    the stored master itself; else the tracker's stable route, which redirects to freshly
    signed links (a signed link written here would expire)."""
    if "hls" not in formats:
        return None
    if settings.outputs_base_url:
        return {"hls": f"{settings.outputs_base_url.rstrip('/')}/{keys.hls_playlist(tenant, video_id)}"}
    return {"hls": f"{settings.tracker_url}/videos/{video_id}/play.m3u8"}
