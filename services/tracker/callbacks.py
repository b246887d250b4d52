"""Callbacks: a POST to the submitter's callback_url when a video completes or fails.

Queued in Postgres (table `callbacks`) in the same transaction as the terminal state,
then delivered by a loop that retries with exponential backoff and gives up after
`callback_max_attempts`. Each POST carries:

- `Idempotency-Key`: `<video_id>/<generation>/<outcome>`, the same on every retry;
- `X-Reel-Timestamp`: Unix seconds when this attempt was signed;
- `X-Reel-Signature`: `v1=` + hex HMAC-SHA256 over `<timestamp>.<body>` with the shared
  `callback_secret`. Receivers recompute it, compare in constant time and refuse old
  timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import threading
import time
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from reel import callback_target, metrics
from reel.settings import Settings

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 600.0
DEV_SECRET = "reel-dev-callback-secret"


# -- pure ------------------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str, now: float, max_age_s: float = 300) -> bool:
    """What a receiver does (and what the tests do)."""
    fresh = abs(now - timestamp) <= max_age_s
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff_s(attempt: int, base_s: float) -> float:
    """Delay after failed attempt n (1-based): base, 2 base, 4 base, ... capped."""
    return float(min(MAX_BACKOFF_S, base_s * 2 ** (attempt - 1)))


def body(video: dict[str, Any]) -> dict[str, Any]:
    """What the receiver gets: the outcome and where the outputs are (no presigned URLs:
    they would expire before a late retry; GET /videos/{id} gives fresh ones)."""

    def when(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "video_id": video["video_id"],
        "generation": video["generation"],
        "state": video["state"],
        "request_id": video["request_id"],
        "profile": video["profile"],
        "duration": video["duration"],
        "outputs": [
            {"kind": o["kind"], "rung": o["rung"], "bucket": o["object"]["bucket"], "key": o["object"]["key"]}
            for o in video["outputs"] or []
        ],
        "error": video["error"]
        and {"stage": video["error_stage"], "reason": video["error"], "kind": video.get("error_kind") or "unknown"},
        "completed_at": when(video["completed_at"]),
        "failed_at": when(video["failed_at"]),
    }


# -- queue (inside the projection's transaction) ----------------------------------------
def enqueue(conn: psycopg.Connection, video_id: str) -> None:
    """Queue the callback of a video in a terminal state with a callback_url; once per
    video, generation and outcome, whatever order its events arrived in."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM videos WHERE video_id = %s AND state IN ('completed', 'failed') "
            "AND callback_url IS NOT NULL",
            (video_id,),
        ).fetchone()
    if row is None:
        return
    key = f"{row['video_id']}/{row['generation']}/{row['state']}"
    conn.execute(
        "INSERT INTO callbacks (idempotency_key, video_id, generation, outcome, url, body) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING",
        (key, row["video_id"], row["generation"], row["state"], row["callback_url"], json.dumps(body(row))),
    )


# -- delivery --------------------------------------------------------------------------
def post(
    url: str, key: str, outcome: str, payload: bytes, secret: str, allow: frozenset[str] = frozenset()
) -> tuple[int | None, str | None, bool]:
    """One attempt: (HTTP status or None, error text or None, refused for good). The URL is
    checked again here (its name may resolve elsewhere now) and the POST goes to the
    address checked; a redirect is an answer, not followed."""
    try:
        target = callback_target.check(url, allow)
    except callback_target.Refused as exc:
        return None, str(exc), True
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "reel-tracker",
        "Idempotency-Key": key,
        "X-Reel-Event": f"video.{outcome}",
        "X-Reel-Timestamp": str(ts),
        "X-Reel-Signature": sign(secret, ts, payload),
    }
    try:
        status = callback_target.post(target, payload, headers, HTTP_TIMEOUT_S)
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, reset
        return None, str(exc)[:500], False
    return status, None if 200 <= status < 300 else f"HTTP {status}", False


def deliver_due(conn: psycopg.Connection, settings: Settings, limit: int = 10) -> int:
    """Try every callback that is due; returns how many were tried. Rows are locked while
    tried (SKIP LOCKED), so several trackers never send the same attempt twice."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        due = cur.execute(
            "SELECT * FROM callbacks WHERE state = 'pending' AND next_attempt_at <= now() "
            "ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        ).fetchall()
        allow = callback_target.allow_list(settings.callback_allow)
        for cb in due:
            attempt = cb["attempts"] + 1
            payload = json.dumps(cb["body"], sort_keys=True).encode()
            status, error, refused = post(
                cb["url"], cb["idempotency_key"], cb["outcome"], payload, settings.callback_secret, allow
            )
            ok = status is not None and 200 <= status < 300
            cur.execute(
                "INSERT INTO callback_attempts (idempotency_key, attempt, status, error) VALUES (%s, %s, %s, %s)",
                (cb["idempotency_key"], attempt, status, error),
            )
            if ok:
                state, outcome = "delivered", "delivered"
            elif refused or attempt >= settings.callback_max_attempts:
                state, outcome = "abandoned", "abandoned"
                log.error("callback %s abandoned after %d attempts: %s", cb["idempotency_key"], attempt, error)
            else:
                state, outcome = "pending", "retried"
                log.warning("callback %s attempt %d failed: %s", cb["idempotency_key"], attempt, error)
            cur.execute(
                "UPDATE callbacks SET state = %s, attempts = %s, last_error = %s, "
                "delivered_at = CASE WHEN %s THEN now() END, "
                "next_attempt_at = now() + make_interval(secs => %s) WHERE idempotency_key = %s",
                (state, attempt, error, ok, backoff_s(attempt, settings.callback_backoff_s), cb["idempotency_key"]),
            )
            metrics.CALLBACKS.labels(outcome).inc()
    return len(due)


def run(settings: Settings, stopping: threading.Event, every_s: float = 0.5) -> None:
    if settings.callback_secret == DEV_SECRET:
        log.warning("callbacks are signed with the development secret: set REEL_CALLBACK_SECRET")
    conn: psycopg.Connection | None = None
    while not stopping.wait(every_s):
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(settings.postgres_url, connect_timeout=5, autocommit=True)
            while not stopping.is_set() and deliver_due(conn, settings):
                pass
        except psycopg.Error as exc:
            log.warning("callbacks not delivered this round: %s", exc)
            conn = None
    if conn is not None:
        conn.close()
