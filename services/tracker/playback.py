"""Playback links (pure): signed playlist tokens, link lifetimes, playlist rewriting.

The outputs bucket is private, and a stored HLS playlist names its children and media
segments by relative URIs, which a presigned URL of the master alone cannot cover. So
the tracker serves the playlists itself, each URI rewritten: a child playlist to the
tracker's own route, a media segment to a presigned URL of its object (or to the
deployment's public base URL). A player sends no Authorization header, so the playlist
route is authorised by a token in its URL: HMAC-SHA256 over video id, generation and
expiry, keyed with `REEL_PLAYBACK_SECRET`.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

DEV_SECRET = "reel-dev-playback-secret"
MARGIN_S = 600  # a viewer pauses, seeks back, starts late: links outlive the video by this much
MAX_TTL_S = 7 * 24 * 3600  # SigV4 presigned URLs last at most seven days
URI_ATTR = re.compile(r'URI="([^"]*)"')


class BadToken(Exception):
    """The token is malformed, forged, expired or of another generation."""


@dataclass(frozen=True)
class Grant:
    video_id: str
    generation: int
    expires: int  # Unix seconds


def lifetime(duration_s: float | None, min_ttl_s: float) -> int:
    """Seconds a playback link lives: at least min_ttl_s, and the whole video plus a margin
    (a viewer must be able to watch to the end on the links of one page load)."""
    return int(min(MAX_TTL_S, max(min_ttl_s, (duration_s or 0.0) + MARGIN_S)))


def _mac(secret: str, video_id: str, generation: int, expires: int) -> str:
    message = f"{video_id}\n{generation}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, grant: Grant) -> str:
    """`<generation>.<expires>.<hex mac>`: URL-safe as it is."""
    return f"{grant.generation}.{grant.expires}.{_mac(secret, grant.video_id, grant.generation, grant.expires)}"


def verify(secret: str, video_id: str, token: str, now: float) -> Grant:
    try:
        generation_text, expires_text, mac = token.split(".")
        grant = Grant(video_id, int(generation_text), int(expires_text))
    except ValueError as exc:
        raise BadToken("not a playback token") from exc
    if not hmac.compare_digest(mac, _mac(secret, video_id, grant.generation, grant.expires)):
        raise BadToken("the playback token's signature does not match")
    if grant.expires <= now:
        raise BadToken("the playback token has expired: ask GET /videos/{id} for a fresh link")
    return grant


def rewrite(text: str, resolve: Callable[[str], str]) -> str:
    """The playlist with every URI (the lines naming a playlist or segment, and URI="…"
    attributes such as EXT-X-MEDIA and EXT-X-MAP) replaced by resolve(uri)."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            lines.append(line)
        elif stripped.startswith("#"):
            lines.append(URI_ATTR.sub(lambda m: f'URI="{resolve(m.group(1))}"', line))
        else:
            lines.append(resolve(stripped))
    return "\n".join(lines) + "\n"


def child_key(playlist_key: str, uri: str) -> str:
    """The object key a relative URI in the playlist at playlist_key names; ValueError for
    anything else (absolute URLs, a way out of the playlist's folder)."""
    if "://" in uri or uri.startswith("/") or "?" in uri:
        raise ValueError(f"not a relative URI: {uri!r}")
    folder = posixpath.dirname(playlist_key)
    key = posixpath.normpath(posixpath.join(folder, uri))
    if not key.startswith(posixpath.dirname(folder) + "/"):
        raise ValueError(f"{uri!r} leaves the video's HLS folder")
    return key
