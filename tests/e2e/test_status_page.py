"""The status page (/ui) in a real browser (Debian's Chromium): it signs in with a tenant's
token, shows a newly submitted video's bar moving through the states to completed
without a reload, opens it - segments, rungs, downloads - and plays it past a join and
on every rung; a
wrong token gets the sign-in page and another tenant's video is not found. A screenshot
of each step is kept in build/test-artifacts/status-page/."""

from __future__ import annotations

import hashlib
import time
import urllib.request
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from devstack.clips import synthetic
from reel import PROJECT_ROOT
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from tests.e2e.browser import chromium, until
from tests.e2e.client import API, status_when
from tests.e2e.conftest import TOKENS
from tests.e2e.test_happy_path import split_of

pytestmark = pytest.mark.usefixtures("fleet")
ARTIFACTS = PROJECT_ROOT / "build" / "test-artifacts" / "status-page"
UNFINISHED = {"queued", "splitting", "transcoding", "stitching"}


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    for browser in chromium():
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        yield tab
        tab.close()


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, token: str) -> None:
    page.fill("#token", token)
    page.click("#signin-form button")


def visible(page: Any, section: str) -> bool:
    return bool(page.evaluate(f"!document.getElementById('{section}').hidden"))


def test_a_wrong_token_gets_the_sign_in_page(page: Any) -> None:
    page.goto(f"{API}/ui")
    until(page, "!document.getElementById('signin').hidden")
    shot(page, "1-sign-in")
    sign_in(page, "not-a-token-of-anyone")
    until(page, "document.getElementById('signin-error').textContent.length > 0")
    assert visible(page, "signin") and not visible(page, "list")
    assert "Signed out" in page.inner_text("#signin-error")
    assert page.evaluate("sessionStorage.getItem('reel-token')") is None  # not kept
    shot(page, "2-wrong-token")


@pytest.fixture(scope="module")
def followed(page: Any, e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Signed in, the list open; then a video submitted and followed on the page to the end."""
    page.goto(f"{API}/ui")
    until(page, "!document.getElementById('signin').hidden")
    sign_in(page, TOKENS["default"])
    until(page, "!document.getElementById('list').hidden")
    assert page.inner_text("#who") == "tenant default"
    page.evaluate("window.notReloaded = true")
    source = tmp_path_factory.mktemp("ui") / "clip.mp4"
    synthetic(source, size="640x360", rate=30, seconds=8, preset="veryfast")
    sub = submit(e2e_settings, Storage.from_settings(e2e_settings), source, "tiny", request_id=str(uuid.uuid4()))
    row = f"row-{sub.video_id}"
    until(page, f"document.getElementById('{row}') !== null", timeout_s=30)  # the list found it by itself
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + 300
    while not seen or seen[-1][0] != "completed":
        assert time.monotonic() < deadline, seen
        state, width = page.evaluate(
            f"(() => {{ const r = document.getElementById('{row}');"
            " return [r.dataset.state, parseFloat(r.cells[2].querySelector('.bar > span').style.width)]; })()"
        )
        if not seen or seen[-1] != (state, width):
            if 0 < width < 100 and all(w in (0, 100) for _, w in seen):
                shot(page, "3-in-progress")  # the first step the bar has moved
            seen.append((state, width))
        time.sleep(0.1)
    shot(page, "4-completed")
    end = wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=60)
    return {"id": sub.video_id, "seen": seen, "end": end, "split": split_of(e2e_settings, sub.video_id)}


def test_a_new_video_moves_through_the_states_to_completed_without_a_reload(
    page: Any, followed: dict[str, Any]
) -> None:
    assert followed["end"]["topic"] == "video.completed"
    states = [s for s, _ in followed["seen"]]
    widths = [w for _, w in followed["seen"]]
    assert states[-1] == "completed" and widths[-1] == 100.0
    assert UNFINISHED & set(states), states  # it was seen running, not only finished
    assert widths == sorted(widths), followed["seen"]  # the bar only moves forward
    assert len(set(widths)) >= 3, followed["seen"]  # and moved, more than from start to end
    assert page.evaluate("window.notReloaded === true")
    assert page.evaluate("reel.updates") >= 2  # the event stream fed it


def test_the_video_page_lists_segments_rungs_downloads_and_plays_past_a_join(
    page: Any, followed: dict[str, Any]
) -> None:
    vid = followed["id"]
    page.click(f"#row-{vid} a")
    until(page, "!document.getElementById('video').hidden")
    status = status_when(vid, "completed")
    until(page, "!document.getElementById('playback').hidden")
    assert page.inner_text("#video-state") == "completed" and page.inner_text("#video-percent") == "100.0%"
    rows = page.evaluate("[...document.querySelectorAll('#segments tr')].map(r => [...r.cells].map(c => c.innerText))")
    assert len(rows) == len(status["segments"]) == len(followed["split"]["segments"]) + 1  # and the audio
    assert all(r[2] == "uploaded" and int(r[3]) >= 1 and r[4] == "0" for r in rows), rows  # state, attempt, hand-backs
    assert sorted(page.inner_text("#rungs").split()) == ["240p", "360p"]
    links = page.evaluate(
        "[...document.querySelectorAll('#downloads tr')].map(r => [r.querySelector('a').href, r.cells[2].innerText])"
    )
    mp4s = {o["object"]["sha256"] for o in status["outputs"] if o["kind"] == "mp4"}
    assert mp4s <= {sha for _, sha in links} and len(links) == len(mp4s) + 2  # the mp4s, poster, manifest
    for url, sha in links:  # each link downloads what its sha256 says
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert hashlib.sha256(resp.read()).hexdigest() == sha
    fps = Fraction(followed["split"]["fps_num"], followed["split"]["fps_den"])
    join = float(followed["split"]["segments"][1]["start_frame"] / fps)
    page.evaluate("document.getElementById('player').play()")
    until(page, f"document.getElementById('player').currentTime > {join + 0.5}", timeout_s=60)
    frames = page.evaluate("document.getElementById('player').getVideoPlaybackQuality().totalVideoFrames")
    assert frames >= (join + 0.5) * 30 * 0.9, frames  # decoded across the join, not skipped to it
    widths = page.evaluate("reel.hls.levels.map(l => l.width)")
    assert sorted(widths) == [426, 640]
    for level, width in enumerate(widths):  # the ladder: each rung plays, its picture its own size
        page.evaluate(f"reel.hls.currentLevel = {level}; document.getElementById('player').play()")
        until(page, f"document.getElementById('player').videoWidth === {width}")
        shown = page.evaluate("document.getElementById('player').getVideoPlaybackQuality().totalVideoFrames")
        until(page, f"document.getElementById('player').getVideoPlaybackQuality().totalVideoFrames > {shown}")
    assert page.evaluate("reel.errors.filter(e => e.fatal)") == []
    shot(page, "5-video")


def test_another_tenants_video_is_not_found(page: Any, followed: dict[str, Any]) -> None:
    page.click("#signout")
    until(page, "!document.getElementById('signin').hidden")
    sign_in(page, TOKENS["beta"])
    until(page, "document.getElementById('who').textContent === 'tenant beta'")
    assert page.evaluate(f"document.getElementById('row-{followed['id']}')") is None  # not in beta's list
    page.evaluate(f"location.hash = '#/videos/{followed['id']}'")
    until(page, "!document.getElementById('notfound').hidden")
    assert f"no video {followed['id']}" in page.inner_text("#notfound-text")
    shot(page, "6-other-tenant")
