"""The URL reel hands out plays: ffprobe reads every rung and the audio from it, and a
real browser (Debian's Chromium, hls.js) plays it from a page on the tracker's origin,
across the joins and on every rung. Tokens that are missing, forged, expired or of
another video are refused."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest

from devstack.clips import synthetic
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from services.tracker.playback import Grant, sign
from tests.e2e import media_checks as mc
from tests.e2e.browser import chromium, until
from tests.e2e.client import API, authorized, status_when
from tests.e2e.conftest import E2E_ENV
from tests.e2e.test_happy_path import split_of

pytestmark = pytest.mark.usefixtures("fleet")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def video(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """8 s at 640x360, 30 fps, stereo: four pipeline segments, three joins; completed."""
    source = tmp_path_factory.mktemp("play") / "clip.mp4"
    synthetic(source, size="640x360", rate=30, seconds=8, preset="veryfast")
    sub = submit(e2e_settings, Storage.from_settings(e2e_settings), source, "tiny", request_id=str(uuid.uuid4()))
    end = wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=300)
    assert end["topic"] == "video.completed", end.get("reason")
    status = status_when(sub.video_id, "completed")
    return {"id": sub.video_id, "source": source, "status": status, "split": split_of(e2e_settings, sub.video_id)}


def test_ffprobe_plays_every_rung_and_the_audio_from_the_status_url(video: dict[str, Any]) -> None:
    master = video["status"]["playback"]["hls"]
    assert master == next(o["url"] for o in video["status"]["outputs"] if o["kind"] == "hls-master")
    assert master.startswith(f"{API}/videos/{video['id']}/hls/master.m3u8?token=")
    probed = mc.ffprobe_json(master, "-show_streams")
    sizes = sorted((s["width"], s["height"]) for s in probed["streams"] if s["codec_type"] == "video")
    assert sizes == [(426, 240), (640, 360)]
    assert any(s["codec_type"] == "audio" for s in probed["streams"])

    frames = len(mc.decoded_video_frames(video["source"]).pts)
    status, body = get(master)
    children = [line for line in body.decode().splitlines() if line.startswith("http")]
    audio = [u for u in body.decode().split('URI="')[1:]]
    assert status == 200 and len(children) == 2 and len(audio) == 1
    starts = []
    for child in children:  # each rung decodes to every frame, through the rewritten links
        decoded = mc.decoded_video_frames(child)
        assert len(decoded.pts) == frames
        starts.append(decoded.pts[0])
    first, length = mc.decoded_audio_seconds(audio[0].split('"')[0])
    aac = 1024 / 48000
    assert length == pytest.approx(8.0, abs=aac + 1 / 30)
    assert all(abs(first - start) <= aac + 1e-3 for start in starts), (first, starts)  # in sync


def test_media_links_are_presigned_and_outlive_the_token(video: dict[str, Any], e2e_settings: Settings) -> None:
    master = video["status"]["playback"]["hls"]
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(master).query)["token"][0]
    expires = int(token.split(".")[1])
    media = get(f"{API}/videos/{video['id']}/hls/360p/index.m3u8?token={token}")[1].decode()
    segments = [line for line in media.splitlines() if line.startswith("http")]
    assert len(segments) == 4
    for url in segments:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert "X-Amz-Signature" in query
        signed_at = time.mktime(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")) - time.timezone
        assert signed_at + int(query["X-Amz-Expires"][0]) >= expires  # no sooner than the token
    assert get(segments[0])[0] == 200
    stored = next(o for o in video["status"]["outputs"] if o["kind"] == "hls-master")["object"]
    unsigned = f"http://{e2e_settings.s3_endpoint}/{stored['bucket']}/{stored['key']}"
    assert get(unsigned)[0] == 403  # the bucket itself stays private


def test_playlists_refuse_missing_forged_expired_and_foreign_tokens(video: dict[str, Any]) -> None:
    vid, secret = video["id"], E2E_ENV["REEL_PLAYBACK_SECRET"]
    route = f"{API}/videos/{vid}/hls/master.m3u8"
    assert get(route)[0] == 401  # no token at all: neither a signed link nor a bearer token
    expired = sign(secret, Grant(vid, 0, int(time.time()) - 1))
    foreign = sign(secret, Grant(str(uuid.uuid4()), 0, int(time.time()) + 600))
    forged = sign("not the tracker's key", Grant(vid, 0, int(time.time()) + 600))
    older = sign(secret, Grant(vid, 1, int(time.time()) + 600))
    for token, says in (
        (expired, "expired"),
        (foreign, "signature"),
        (forged, "signature"),
        (older, "another generation"),
    ):
        status, body = get(f"{route}?token={token}")
        assert status == 403 and says in json.loads(body)["error"], (status, body)
    fine = sign(secret, Grant(vid, 0, int(time.time()) + 600))
    assert get(f"{route}?token={fine}")[0] == 200
    assert get(f"{API}/videos/{vid}/hls/1080p/index.m3u8?token={fine}")[0] == 404  # no such rung
    assert get(f"{API}/videos/{uuid.uuid4()}/hls/master.m3u8?token={fine}")[0] == 403
    manifest = json.loads(get(next(o["url"] for o in video["status"]["outputs"] if o["kind"] == "manifest"))[1])
    assert manifest["playback"]["hls"] == f"{API}/videos/{vid}/play.m3u8"  # the owner's stable address ...
    assert get(manifest["playback"]["hls"])[0] == 401
    with urllib.request.urlopen(authorized(manifest["playback"]["hls"]), timeout=30) as resp:  # ... signs a fresh link
        assert resp.url.startswith(route + "?token=") and resp.read().startswith(b"#EXTM3U")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def test_a_browser_plays_it_across_the_joins_and_on_every_rung(video: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    page.goto(video["status"]["playback"]["watch"])  # served from the tracker's origin
    assert page.evaluate("location.origin") == API
    fps = Fraction(video["split"]["fps_num"], video["split"]["fps_den"])
    joins = [float(s["start_frame"] / fps) for s in video["split"]["segments"][1:]]
    assert len(joins) == 3

    until(page, "reel.hls && reel.hls.levels.length === 2")
    first = until(page, "document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames")
    ended = until(page, "document.getElementById('video').ended || false", timeout_s=60)
    assert ended
    quality = page.evaluate("document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames")
    assert quality > first and quality >= 8 * 30 * 0.9, quality  # it kept decoding, to the end
    # The HLS segment that starts at each join, by the playlist's own durations (hls.js moves
    # a fragment's start to its first timestamp once parsed): it and the one before it were
    # fetched and played.
    level = page.evaluate("reel.played[0].level")
    rendition = ["360p", "240p"][0 if page.evaluate(f"reel.hls.levels[{level}].width") == 640 else 1]
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(video["status"]["playback"]["hls"]).query)["token"][0]
    media = get(f"{API}/videos/{video['id']}/hls/{rendition}/index.m3u8?token={token}")[1].decode()
    durations = [float(line[8:].split(",")[0]) for line in media.splitlines() if line.startswith("#EXTINF:")]
    starts = [sum(durations[:n]) for n in range(len(durations))]
    played = {f["sn"] for f in page.evaluate(f"reel.played.filter(f => f.level === {level})")}
    loaded = {f["sn"] for f in page.evaluate(f"reel.loaded.filter(f => f.type === 'main' && f.level === {level})")}
    for join in joins:
        after = next(n for n, start in enumerate(starts) if abs(start - join) < 0.01)
        assert {after - 1, after} <= played & loaded, (join, played, loaded)

    widths = page.evaluate("reel.hls.levels.map(l => l.width)")
    assert sorted(widths) == [426, 640]
    for level, width in enumerate(widths):  # switch, and the picture is that rung's
        page.evaluate(
            f"reel.hls.currentLevel = {level}; const v = document.getElementById('video');v.currentTime = 0; v.play()"
        )
        until(page, f"document.getElementById('video').videoWidth === {width}")
        shown = page.evaluate("document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames")
        until(page, f"document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames > {shown}")
    assert page.evaluate("reel.errors.filter(e => e.fatal)") == []
    page.close()
