"""Callbacks: a signed POST on completion and on failure, retried with backoff, one
idempotency key per outcome; a receiver that fails twice still gets exactly one
accepted delivery. The receiver is a real HTTP server on loopback, in the test (allowed by
REEL_CALLBACK_ALLOW); URLs that reach inside are refused at submit and never POSTed to,
and a redirect is never followed."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devstack.clips import synthetic
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from services.tracker.callbacks import verify
from tests.e2e.client import authorized, status_when
from tests.e2e.conftest import E2E_ENV
from tests.e2e.test_tracker import metrics

pytestmark = pytest.mark.usefixtures("fleet")
SECRET = E2E_ENV["REEL_CALLBACK_SECRET"]


@dataclass
class Receiver:
    """Answers 500 to the first `fail_first` POSTs of each idempotency key, then 200."""

    fail_first: int
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def deliveries(self, video_id: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["body"]["video_id"] == video_id]

    def wait_accepted(self, video_id: str, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not any(r["answer"] == 200 for r in self.deliveries(video_id)):
            assert time.monotonic() < deadline, f"no accepted callback: {self.deliveries(video_id)}"
            time.sleep(0.2)
        return self.deliveries(video_id)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(fail_first=2)
    seen: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            key = self.headers["Idempotency-Key"]
            seen[key] = seen.get(key, 0) + 1
            answer = 500 if seen[key] <= rec.fail_first else 200
            rec.received.append(
                {
                    "headers": dict(self.headers),
                    "raw": raw,
                    "body": json.loads(raw),
                    "answer": answer,
                    "at": time.time(),
                }
            )
            self.send_response(answer)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/reel"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield rec
    server.shutdown()


def status(video_id: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{E2E_ENV['REEL_TRACKER_PORT']}/videos/{video_id}"
    with urllib.request.urlopen(authorized(url), timeout=10) as resp:
        return dict(json.loads(resp.read()))


def assert_signed(delivery: dict[str, Any]) -> None:
    h = delivery["headers"]
    assert verify(SECRET, int(h["X-Reel-Timestamp"]), delivery["raw"], h["X-Reel-Signature"], time.time())
    assert not verify("another-secret", int(h["X-Reel-Timestamp"]), delivery["raw"], h["X-Reel-Signature"], time.time())


def test_completion_callback_survives_a_receiver_that_fails_twice(
    receiver: Receiver, e2e_settings: Settings, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    synthetic(clip, audio=False)
    storage = Storage.from_settings(e2e_settings)
    sub = submit(e2e_settings, storage, clip, "tiny", request_id=str(uuid.uuid4()), callback_url=receiver.url)
    assert wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=300)["topic"] == "video.completed"

    got = receiver.wait_accepted(sub.video_id)
    assert [d["answer"] for d in got] == [500, 500, 200]
    assert {d["headers"]["Idempotency-Key"] for d in got} == {f"{sub.video_id}/0/completed"}
    assert {d["headers"]["X-Reel-Event"] for d in got} == {"video.completed"}
    for d in got:
        assert_signed(d)
    gaps = [b["at"] - a["at"] for a, b in zip(got, got[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.3, f"no backoff between retries: {gaps}"
    body = got[-1]["body"]
    assert body["state"] == "completed" and body["error"] is None
    assert {o["kind"] for o in body["outputs"]} >= {"mp4", "hls-master", "manifest"}
    assert all(storage.exists(o["bucket"], o["key"]) for o in body["outputs"])

    cb = status(sub.video_id)["callbacks"]
    assert len(cb) == 1 and cb[0]["state"] == "delivered" and cb[0]["attempts"] == 3
    assert [t["status"] for t in cb[0]["tries"]] == [500, 500, 200]
    time.sleep(2)  # well past the next backoff: a delivered callback is not sent again
    assert len(receiver.deliveries(sub.video_id)) == 3
    m = metrics()  # what a dashboard shows of it
    assert m['reel_callbacks_total{outcome="retried"}'] >= 2 and m['reel_callbacks_total{outcome="delivered"}'] >= 1


def test_failure_callback_carries_the_reason(receiver: Receiver, e2e_settings: Settings, tmp_path: Path) -> None:
    receiver.fail_first = 0
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all " * 100)
    storage = Storage.from_settings(e2e_settings)
    sub = submit(e2e_settings, storage, junk, "tiny", request_id=str(uuid.uuid4()), callback_url=receiver.url)
    end = wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=120)
    assert end["topic"] == "video.failed"
    (delivery,) = receiver.wait_accepted(sub.video_id)
    assert_signed(delivery)
    assert delivery["headers"]["Idempotency-Key"] == f"{sub.video_id}/0/failed"
    body = delivery["body"]
    assert body["state"] == "failed"
    assert (
        body["error"]
        == {"stage": end["stage"], "reason": end["reason"], "kind": "bad_input"}
        == {"stage": end["stage"], "reason": end["reason"], "kind": end["kind"]}
    )


@pytest.mark.parametrize(
    "inside",
    [
        "http://localhost:{port}/hooks",  # a name resolving to loopback
        "http://[::1]:{port}/hooks",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.1.2.3/hooks",
    ],
)
def test_a_callback_url_that_reaches_inside_is_refused_at_submit(
    inside: str, receiver: Receiver, e2e_settings: Settings, tmp_path: Path
) -> None:
    """Refused with the reason when the video is submitted (it fails before any work), and
    never POSTed to: the failure's own callback is refused again at delivery."""
    port = receiver.url.split(":")[2].split("/")[0]
    clip = tmp_path / "clip.mp4"
    synthetic(clip, seconds=1, audio=False)
    storage = Storage.from_settings(e2e_settings)
    url = inside.format(port=port)
    sub = submit(e2e_settings, storage, clip, "tiny", request_id=str(uuid.uuid4()), callback_url=url)
    end = wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=120)
    assert end["topic"] == "video.failed" and end["stage"] == "splitter", end
    assert "callbacks go to public addresses only" in end["reason"] or "does not resolve" in end["reason"], end
    status_when(sub.video_id, "failed")  # projected: until then the tracker answers 404
    deadline = time.monotonic() + 30
    while not [c for c in status(sub.video_id).get("callbacks", []) if c["state"] == "abandoned"]:
        assert time.monotonic() < deadline, status(sub.video_id)
        time.sleep(0.3)
    (cb,) = status(sub.video_id)["callbacks"]
    assert cb["attempts"] == 1 and "public addresses only" in cb["last_error"], cb
    assert receiver.deliveries(sub.video_id) == []


def test_a_redirect_to_inside_is_not_followed(e2e_settings: Settings, tmp_path: Path) -> None:
    """An allowed receiver answering 307 towards another listener: the answer counts as a
    failed attempt; the listener it points to receives nothing."""
    hits: dict[str, int] = {"redirector": 0, "target": 0}

    def listener(name: str, location: str | None) -> ThreadingHTTPServer:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers["Content-Length"]))
                hits[name] += 1
                self.send_response(307 if location else 200)
                if location:
                    self.send_header("Location", location)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    target = listener("target", None)
    redirector = listener("redirector", f"http://127.0.0.1:{target.server_address[1]}/metadata")
    try:
        clip = tmp_path / "clip.mp4"
        synthetic(clip, seconds=1, audio=False)
        storage = Storage.from_settings(e2e_settings)
        url = f"http://127.0.0.1:{redirector.server_address[1]}/hooks"
        sub = submit(e2e_settings, storage, clip, "tiny", request_id=str(uuid.uuid4()), callback_url=url)
        assert wait(e2e_settings, sub.video_id, sub.submitted_ms, timeout=120)["topic"] == "video.completed"
        deadline = time.monotonic() + 30
        while hits["redirector"] < 2:  # tried, and tried again: a 307 is a failure
            assert time.monotonic() < deadline, hits
            time.sleep(0.2)
        (cb,) = status(sub.video_id)["callbacks"]
        assert cb["last_error"] == "HTTP 307" and hits["target"] == 0, (cb, hits)
    finally:
        target.shutdown()
        redirector.shutdown()
