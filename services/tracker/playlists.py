"""Playback: a video's HLS playlists served with signed links, and a page that plays them.

`GET /videos/{id}/hls/master.m3u8?token=…` and `…/hls/{rendition}/index.m3u8?token=…`
answer the stored playlists with every URI rewritten (services/tracker/playback.py);
`/videos/{id}/play.m3u8` redirects to a freshly signed master, `/videos/{id}/watch` is a
player page (hls.js, from npm) served from this origin.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from reel import keys
from reel.settings import Settings
from reel.storage import Storage
from services.tracker.auth import tenant_of
from services.tracker.playback import DEV_SECRET, BadToken, Grant, child_key, lifetime, rewrite, sign, verify

log = logging.getLogger(__name__)

HLS_JS = Path(__file__).parent / "player" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
MPEGURL = "application/vnd.apple.mpegurl"


@dataclass(frozen=True)
class Links:
    """The URLs handed to the viewers of one video, minted at `now`: presigned (or public)
    object URLs and the tracker's tokened playlist routes, all living `ttl` seconds."""

    settings: Settings
    presign: Callable[[str, str, timedelta], str]
    tenant: str
    video_id: str
    generation: int
    duration: float | None
    now: float

    @property
    def ttl(self) -> int:
        return lifetime(self.duration, self.settings.playback_ttl_s)

    @property
    def expires(self) -> int:
        return int(self.now) + self.ttl

    @property
    def public(self) -> str:
        return self.settings.outputs_base_url.rstrip("/")

    @classmethod
    def of(cls, settings: Settings, presign: Callable[[str, str, timedelta], str], video_id: str, row: dict) -> Links:
        """A video's links, minted now, from its tracker row."""
        return cls(settings, presign, row["tenant"], video_id, row["generation"], row["duration"], time.time())

    def token(self) -> str:
        return sign(self.settings.playback_secret, Grant(self.video_id, self.generation, self.expires))

    def object(self, bucket: str, key: str, at_least_s: float = 0) -> str:
        if self.public:
            return f"{self.public}/{quote(key)}"
        return self.presign(bucket, key, timedelta(seconds=max(self.ttl, int(at_least_s) + 1)))

    def playlist(self, rendition: str | None = None, token: str | None = None) -> str:
        """The master (rendition None) or one rendition's media playlist."""
        key = keys.hls_playlist(self.tenant, self.video_id, rendition)
        if self.public:  # the stored playlists play as they are: their URIs are relative
            return f"{self.public}/{quote(key)}"
        route = key.removeprefix(keys.output(self.tenant, self.video_id, ""))  # the same path under the video's route
        return f"{self.settings.tracker_url}/videos/{self.video_id}/{route}?token={token or self.token()}"

    def watch(self) -> str:
        return f"{self.settings.tracker_url}/videos/{self.video_id}/watch?token={self.token()}"

    def events(self) -> str:
        """The video's event stream, signed: a page's EventSource cannot send a token."""
        return f"{self.settings.tracker_url}/videos/{self.video_id}/events?token={self.token()}"


def output_url(links: Links, output: dict[str, Any]) -> str:
    """The playable URL of one entry of a completed video's outputs."""
    if output["kind"] == "hls-master":
        return links.playlist()
    if output["kind"] == "hls-playlist":
        return links.playlist(output["rung"])
    return links.object(output["object"]["bucket"], output["object"]["key"])


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def router(settings: Settings, storage: Storage, playable: Callable[[str], dict[str, Any] | None]) -> APIRouter:
    """playable(video_id): the video's generation, state, duration and outputs, or None."""
    api = APIRouter()
    if settings.playback_secret == DEV_SECRET:
        log.warning("playback links are signed with the development secret: set REEL_PLAYBACK_SECRET")

    @functools.lru_cache(maxsize=512)
    def stored(bucket: str, key: str, sha256: str) -> bytes:
        """A small output (manifest, playlist), checked against its sha256; cached by it."""
        data = storage.get_bytes(bucket, key)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise Refused(502, f"{key} does not match its checksum")
        return data

    def video(video_id: str, tenant: str | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """tenant: the caller's, from its bearer token (another tenant's video is not
        found); None when a signed link has already said which video."""
        row = playable(video_id)
        if row is None or tenant not in (None, row["tenant"]):
            raise Refused(404, f"no video {video_id}")
        if row["state"] != "completed":
            raise Refused(409, f"video {video_id} is {row['state']}: it plays once completed")
        ref = next((o["object"] for o in row["outputs"] if o["kind"] == "manifest"), None)
        if ref is None:
            raise Refused(404, f"video {video_id} has no manifest")
        manifest = json.loads(stored(ref["bucket"], ref["key"], ref["sha256"]))
        return row, {o["key"]: o for o in manifest["outputs"]}

    def hls_video(video_id: str, tenant: str | None) -> dict[str, Any]:
        row, objects = video(video_id, tenant)
        if keys.hls_playlist(row["tenant"], video_id) not in objects:
            raise Refused(404, f"video {video_id} was made without HLS (formats: mp4)")
        return row

    def links_for(row: dict[str, Any], video_id: str) -> Links:
        return Links.of(settings, storage.presign_get, video_id, row)

    def serve(request: Request, video_id: str, rendition: str | None, token: str) -> Response:
        try:
            grant = verify(settings.playback_secret, video_id, token, time.time())
            row, objects = video(video_id)
            if grant.generation != row["generation"]:
                raise Refused(403, "the playback token is for another generation of this video")
            key = keys.hls_playlist(row["tenant"], video_id, rendition)
            if key not in objects:
                raise Refused(404, f"video {video_id} has no playlist {key.split('/hls/', 1)[1]}")
            links = links_for(row, video_id)
            bucket = settings.bucket_outputs
            text = stored(bucket, key, objects[key]["sha256"]).decode()
            remaining = grant.expires - links.now

            def resolve(uri: str) -> str:
                child = child_key(key, uri)
                if child not in objects:
                    raise Refused(502, f"{key} names {uri}, which the manifest does not list")
                if rendition is None:  # the master names media playlists: our own route, same token
                    return links.playlist(child.split("/")[-2], token)
                return links.object(bucket, child, at_least_s=remaining)  # no sooner than the token

            body = rewrite(text, resolve)
        except BadToken as exc:
            return _refuse(403, str(exc))
        except Refused as exc:
            return _refuse(exc.status, str(exc))
        headers = {"Cache-Control": "private, no-store", **cors(settings, request)}
        return Response(body, media_type=MPEGURL, headers=headers)

    @api.get("/videos/{video_id}/hls/master.m3u8", tags=["playback"])
    def master(
        request: Request, video_id: str, token: str = Query(..., description="from GET /videos/{id}")
    ) -> Response:  # noqa: E501
        """The master playlist, its renditions named by this route with the same token."""
        return serve(request, video_id, None, token)

    @api.get("/videos/{video_id}/hls/{rendition}/index.m3u8", tags=["playback"])
    def media(request: Request, video_id: str, rendition: str, token: str = Query(...)) -> Response:
        """A rendition's media playlist, each segment a presigned URL (or a public one)."""
        return serve(request, video_id, rendition, token)

    @api.get("/videos/{video_id}/play.m3u8", tags=["playback"])
    def play(request: Request, video_id: str) -> Response:
        """A stable address for the video's owner (bearer token): redirects to a freshly
        signed master playlist, which is what a player is given."""
        try:
            row = hls_video(video_id, request.state.tenant)
        except Refused as exc:
            return _refuse(exc.status, str(exc))
        return RedirectResponse(links_for(row, video_id).playlist(), status_code=307)

    @api.get("/videos/{video_id}/watch", response_class=HTMLResponse, tags=["playback"])
    def watch(request: Request, video_id: str, token: str | None = Query(None)) -> Response:
        """A page that plays the video (hls.js; Safari plays HLS natively): with the signed
        link the status gives (`playback.watch`), or a bearer token."""
        try:
            if token is not None:
                verify(settings.playback_secret, video_id, token, time.time())
            row = hls_video(video_id, tenant_of(request))
        except BadToken as exc:
            return _refuse(403, str(exc))
        except Refused as exc:
            return _refuse(exc.status, str(exc))
        return HTMLResponse(player_page(video_id, links_for(row, video_id).playlist()))

    @api.get("/player/hls.min.js", include_in_schema=False)
    def hls_js() -> Response:
        if not HLS_JS.exists():
            return _refuse(404, "hls.js is not installed: run `npm ci` in services/tracker/player")
        return FileResponse(HLS_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    return api


def cors(settings: Settings, request: Request) -> dict[str, str]:
    """Players on other sites fetch the playlists by XHR: allow the configured origins."""
    allowed = [o.strip() for o in settings.playback_origins.split(",") if o.strip()]
    origin = request.headers.get("origin")
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*"}
    if origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def player_page(video_id: str, master_url: str) -> str:
    """The watch page (ui/player.js plays it and keeps what the player did in `window.reel`)."""
    src = json.dumps(master_url).replace("</", "<\\/")  # cannot close the script element
    return PAGE.replace("{title}", html.escape(video_id)).replace("{src}", src)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>reel · {title}</title>
<style>body{margin:2rem;font-family:system-ui,sans-serif;background:#111;color:#ddd}
video{width:min(100%,960px);background:#000}</style></head>
<body><video id="video" controls muted autoplay playsinline></video><p id="state"></p>
<script src="/player/hls.min.js"></script>
<script src="/ui/player.js"></script>
<script>
const src = {src};
if (!reelPlay(document.getElementById("video"), src)) {
  document.getElementById("state").textContent = "This browser cannot play HLS.";
}
</script></body></html>
"""
