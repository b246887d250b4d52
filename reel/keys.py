"""Every object key reel writes, built in one place.

Every key below starts with the tenant's prefix (reel/tenancy.py: nothing for the default
tenant, `tenants/{name}/` for any other), in each of the three buckets.

reel-work (intermediates; a generation's prefix holds all of its work, so removing it
clears a failed video):

    {video}/{generation}/{track}/{segment}/{attempt-id}/{name}   an attempt's work: span, renditions
    {video}/{generation}/source/{attempt-id}/source.mp4           the remux of a source with no index
    {video}/{generation}/placed/{rung}/{segment}.mp4 | audio.m4a  segments the pusher has placed
    {video}/{generation}/checkpoints/{track}/{segment}/{stage}.json
    attempts/{video}/{generation}/{track}/{segment}/{stage}/{ns}-{attempt-id}.json
    failed/{video}/{generation}.json                              a failed generation's tombstone
    submissions/{video}.json                                      what `reel submit` sent

reel-sources: uploads/{sha256}/{file name}. reel-outputs: {video}/mp4/{rung}.mp4,
{video}/hls/…, {video}/poster.jpg, {video}/manifest.json.

`segment` is the video segment's index on five digits, or `all` for video-level work and
the audio task; `attempt-id` is unique per attempt, so a zombie and its successor never
write to the same place.
"""

from __future__ import annotations

from typing import Any

from reel.tenancy import DEFAULT, prefix

Event = dict[str, Any]  # anything with the envelope's video_id, generation, track, segment_index


def segment(ev: Event) -> str:
    return "all" if ev.get("segment_index") is None else f"{ev['segment_index']:05d}"


def tenant_prefix(ev: Event) -> str:
    return prefix(ev.get("tenant", DEFAULT))


def generation(ev: Event) -> str:
    return f"{tenant_prefix(ev)}{ev['video_id']}/{ev['generation']}/"


def work(ev: Event, attempt_id: str, name: str) -> str:
    return f"{generation(ev)}{ev['track']}/{segment(ev)}/{attempt_id}/{name}"


def remux(ev: Event, attempt_id: str) -> str:
    return f"{generation(ev)}source/{attempt_id}/source.mp4"


def placed_prefix(ev: Event) -> str:
    return f"{generation(ev)}placed/"


def placed_part(ev: Event) -> str:
    """A placed part's name under its rung: the segment, or the one audio file."""
    return "audio.m4a" if ev["track"] == "audio" else f"{ev['segment_index']:05d}.mp4"


def placed(ev: Event, rung: str) -> str:
    return f"{placed_prefix(ev)}{rung}/{placed_part(ev)}"


def checkpoint(stage: str, ev: Event) -> str:
    return f"{generation(ev)}checkpoints/{ev['track']}/{segment(ev)}/{stage}.json"


def attempts_prefix(stage: str, ev: Event) -> str:
    return f"{tenant_prefix(ev)}attempts/{ev['video_id']}/{ev['generation']}/{ev['track']}/{segment(ev)}/{stage}/"


def attempt_marker(stage: str, ev: Event, time_ns: int, attempt_id: str) -> str:
    # Time-ordered names, so listing shows the attempts in order.
    return f"{attempts_prefix(stage, ev)}{time_ns:020d}-{attempt_id}.json"


def tombstone(ev: Event) -> str:
    return f"{tenant_prefix(ev)}failed/{ev['video_id']}/{ev['generation']}.json"


def submission(tenant: str, video_id: str) -> str:
    return f"{prefix(tenant)}submissions/{video_id}.json"


def upload(tenant: str, sha256: str, file_name: str) -> str:
    """An uploaded source; file_name already made a safe key part (tenancy.safe_file_name)."""
    return f"{prefix(tenant)}uploads/{sha256}/{file_name}"


def output(tenant: str, video_id: str, path: str) -> str:
    """An output under the video's folder in reel-outputs (path as `mp4/360p.mp4`)."""
    return f"{prefix(tenant)}{video_id}/{path}"


def manifest(tenant: str, video_id: str) -> str:
    return output(tenant, video_id, "manifest.json")


def hls_playlist(tenant: str, video_id: str, rendition: str | None = None) -> str:
    """The master playlist (rendition None) or a rendition's media playlist."""
    return output(tenant, video_id, "hls/master.m3u8" if rendition is None else f"hls/{rendition}/index.m3u8")
