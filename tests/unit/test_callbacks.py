from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from services.tracker.callbacks import backoff_s, body, sign, verify


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b'1700000000.{"a": 1}', hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, b'{"a": 1}') == "v1=" + expected


def test_verify_refuses_other_secrets_bodies_and_stale_timestamps() -> None:
    sig = sign("k", 1000, b"{}")
    assert verify("k", 1000, b"{}", sig, now=1100)
    assert not verify("other", 1000, b"{}", sig, now=1100)
    assert not verify("k", 1000, b"{ }", sig, now=1100)
    assert not verify("k", 1000, b"{}", sig, now=1000 + 301)  # a replay, too late


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_s(30, 2.0) == 600.0


def test_body_lists_where_outputs_are_and_the_error() -> None:
    row = {
        "video_id": "v",
        "generation": 1,
        "state": "failed",
        "request_id": "r",
        "profile": "tiny",
        "duration": 4.0,
        "outputs": None,
        "error": "no video stream",
        "error_stage": "splitter",
        "error_kind": "unsupported_input",
        "completed_at": None,
        "failed_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    b = body(row)
    assert b["error"] == {"stage": "splitter", "reason": "no video stream", "kind": "unsupported_input"}
    assert b["outputs"] == []
    assert b["failed_at"] == "2026-01-01T00:00:00+00:00"
    mp4 = {"kind": "mp4", "rung": "240p", "object": {"bucket": "o", "key": "v/mp4/240p.mp4"}}
    done = {**row, "state": "completed", "error": None, "failed_at": None, "outputs": [mp4]}
    assert body(done)["outputs"] == [{"kind": "mp4", "rung": "240p", "bucket": "o", "key": "v/mp4/240p.mp4"}]
    assert body(done)["error"] is None
