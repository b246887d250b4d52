"""No credential leaves reel except in a completed video's playable URLs.

The session's stack runs with planted access and secret keys found nowhere else
(tests/conftest.py). Three videos fail where ffmpeg reads presigned URLs or its own
words are passed on: in the splitter (not media), the puller (truncated) and the
transcoder (an encoder that refuses its preset, three attempts). Then every event on
every topic, the tracker's event log, every attempt marker, every service log and the
tracker's answers are searched for the keys and for the parameters of a signature.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.clips import synthetic
from reel.contract import all_topics
from reel.kafka import read_to_end
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from tests.e2e.client import authorized
from tests.e2e.conftest import E2E_ENV, TOKENS
from tests.e2e.untidy import make_bad

pytestmark = pytest.mark.usefixtures("fleet")
API = f"http://127.0.0.1:{E2E_ENV['REEL_TRACKER_PORT']}"
SIGNATURE_PARTS = ("X-Amz-Signature", "X-Amz-Credential")


def leaks(settings: Settings, text: str | bytes) -> list[str]:
    blob = text if isinstance(text, str) else text.decode("latin-1")
    keys = (E2E_ENV["REEL_CALLBACK_SECRET"], E2E_ENV["REEL_PLAYBACK_SECRET"], *TOKENS.values())
    secrets = (settings.s3_access_key, settings.s3_secret_key, *keys, *SIGNATURE_PARTS)
    return [s for s in secrets if s.lower() in blob.lower()]


@pytest.fixture(scope="module")
def failures(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("secrets")
    profile = json.loads((Path(__file__).parents[2] / "reel" / "profiles" / "tiny.json").read_text())
    refused = {**profile, "name": "refused-preset", "preset": "no-such-preset"}
    (Path(e2e_settings.profiles_dir) / "refused-preset.json").write_text(json.dumps(refused))
    whole = folder / "whole.mp4"
    synthetic(whole, seconds=4, audio=False)
    cases = {
        "splitter": (make_bad("text", folder), "tiny"),  # not media: ffprobe refuses its URL
        "puller": (make_bad("truncated", folder), "tiny"),  # the upload broke off halfway
        "transcoder": (whole, "refused-preset"),  # x264 refuses the preset, every attempt
    }
    storage = Storage.from_settings(e2e_settings)
    subs = {
        stage: submit(e2e_settings, storage, path, prof, request_id=str(uuid.uuid4()))
        for stage, (path, prof) in cases.items()
    }
    return {stage: wait(e2e_settings, s.video_id, s.submitted_ms, timeout=300) for stage, s in subs.items()}


def test_failures_say_what_happened_in_words(failures: dict[str, dict[str, Any]]) -> None:
    for stage, end in failures.items():
        assert end["topic"] == "video.failed" and end["stage"] == stage, (stage, end)
    assert "not a readable video" in failures["splitter"]["reason"]
    assert "Invalid data found" in failures["splitter"]["reason"]  # ffmpeg's own line is kept ...
    assert "reel-sources/uploads/" in failures["splitter"]["reason"]  # ... naming the object it read
    assert "truncated" in failures["puller"]["reason"]
    assert failures["transcoder"]["reason"].startswith("3 attempts failed or died")
    assert "no-such-preset" in failures["transcoder"]["reason"]
    assert all(len(end["reason"]) < 600 for end in failures.values()), [e["reason"] for e in failures.values()]


def test_no_credential_anywhere_reel_writes(failures: dict[str, dict[str, Any]], e2e_settings: Settings) -> None:
    s = e2e_settings
    found: dict[str, list[str]] = {}

    def look(where: str, text: str | bytes) -> None:
        if hit := leaks(s, text):
            found[where] = hit

    for msg in read_to_end(s, all_topics()):  # every event, dead letters included
        look(f"{msg.topic()}@{msg.offset()}", msg.value() or b"")
    with psycopg.connect(s.postgres_url) as conn:
        for (body,) in conn.execute("SELECT body::text FROM events"):
            look("tracker events", body)
        for (error,) in conn.execute("SELECT coalesce(error, '') FROM videos"):
            look("tracker videos", error)
    storage = Storage.from_settings(s)
    markers = storage.list(s.bucket_work, "attempts/")
    assert markers, "no attempt markers to search"
    for key in markers:
        look(key, storage.get_bytes(s.bucket_work, key))
    logs = [p for p in (s.home / "logs").glob("*.log") if p.name not in ("s3.log", "kafka.log", "postgres.log")]
    assert any(p.name.startswith("transcoder") for p in logs)
    for path in logs:
        look(path.name, path.read_bytes())
    for end in failures.values():
        vid = end["video_id"]
        for route in (f"/videos/{vid}", f"/videos/{vid}/events"):
            with urllib.request.urlopen(authorized(API + route), timeout=30) as resp:
                look(route, resp.read())
    for route in ("/videos?limit=200", "/metrics/"):
        with urllib.request.urlopen(authorized(API + route), timeout=30) as resp:
            look(route, resp.read())
    assert found == {}, found
