"""The status endpoint: JSON, a live progress stream (server-sent events), health, metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Producer
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import make_asgi_app
from psycopg_pool import ConnectionPool

from reel import keys
from reel.attempts import Attempts
from reel.contract import Registry, envelope
from reel.kafka import kafka_reachable, producer_config
from reel.settings import Settings
from reel.storage import Storage
from reel.task import Kind, video_failed
from services.tracker import auth, front_door, playlists, reads, status_page
from services.tracker.playback import BadToken, verify
from services.tracker.playlists import Links, output_url
from services.tracker.projection import FINISHED, VIDEO_STATES, current_work, stalled
from services.tracker.retry import Conflict, check_segment_retry, claim_retry

STALL_S = 15.0  # a segment whose worker sent no heartbeat for this long is stalled
STATES = VIDEO_STATES


class NotFound(Exception):
    pass


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _valid_id(video_id: str) -> str:
    try:
        return str(uuid.UUID(video_id))
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ["path", "video_id"], "msg": "not a video id (a UUID)", "type": "value_error"}]
        ) from exc


def status_view(row: dict[str, Any], links: Links, now: datetime) -> dict[str, Any]:
    """What GET /videos/{id} answers (pure, given the video's links and a clock)."""
    segments = []
    for s in row["segments"]:
        age = (now - s["last_beat"]).total_seconds() if s["last_beat"] else None
        state = s["stage"]
        if stalled(age, s["working"], s["stage"], STALL_S):
            state = "stalled"
        elif s["retrying"] and s["stage"] != "uploaded":
            state = f"retrying (attempt {s['attempt']})"
        segments.append(
            {
                "track": s["track"],
                "index": None if s["segment_index"] < 0 else s["segment_index"],
                "stage": s["stage"],
                "state": state,
                "attempt": s["attempt"],
                "handbacks": s.get("handbacks", 0),
                "worker": s["worker"],
                "working": current_work(s["stage"], s["working"]),
                "percent": round(float(s["work_percent"]), 1),
                "media_seconds": round(float(s["media_seconds"]), 3),
                "error": s["error"],
            }
        )
    outputs = [{**o, "url": output_url(links, o)} for o in row["outputs"] or []]
    playback = None
    if row["state"] == "completed":  # links that play, each living `expires_at`
        hls = any(o["kind"] == "hls-master" for o in outputs)
        playback = {
            "hls": links.playlist() if hls else None,
            "watch": links.watch() if hls else None,
            "expires_at": datetime.fromtimestamp(links.expires, UTC).isoformat(),
        }
    times = {k: row[k] and row[k].isoformat() for k in ("requested_at", "split_at", "completed_at", "failed_at")}
    return {
        "video_id": row["video_id"],
        "generation": row["generation"],
        "state": row["state"],
        "percent": round(float(row["percent"]), 1),
        "profile": row["profile"],
        "source": row["source"],
        "duration": row["duration"],
        "error": row["error"]
        and {"stage": row["error_stage"], "reason": row["error"], "kind": row["error_kind"] or "unknown"},
        "timings": times,
        "segments": segments,
        "outputs": outputs,
        "playback": playback,
        "events": links.events(),
        "callbacks": [
            {
                **c,
                "delivered_at": c["delivered_at"] and c["delivered_at"].isoformat(),
                "next_attempt_at": c["state"] == "pending" and c["next_attempt_at"].isoformat() or None,
            }
            for c in row.get("callbacks", [])
        ],
    }


def create_app(settings: Settings, storage: Storage) -> FastAPI:
    app = FastAPI(title="reel tracker", version="1", description="Status and live progress of reel videos.")
    app.mount("/metrics", make_asgi_app())

    # Connections kept open and checked before each use, rather than one TCP connect and
    # authentication per request; a Postgres failover costs one failed check, not a request.
    pool = ConnectionPool(
        settings.postgres_url,
        min_size=1,
        max_size=8,
        kwargs={"autocommit": True, "connect_timeout": 5},
        timeout=5,
        check=ConnectionPool.check_connection,
        name="tracker-api",
        open=True,
    )

    def connect() -> AbstractContextManager[psycopg.Connection]:
        return pool.connection()

    producer = Producer(producer_config(settings, "tracker-api", None))
    registry = Registry()

    def produce_event(topic: str, key: str, record: dict[str, Any]) -> None:
        producer.produce(topic, key=key.encode(), value=registry.encode_for_topic(topic, record))
        if producer.flush(15) != 0:
            raise RuntimeError(f"Kafka did not take the {topic} event")

    def load(video_id: str, tenant: str | None) -> dict[str, Any]:
        with connect() as conn:
            row = reads.video(conn, video_id, tenant)
        if row is None:
            raise NotFound(video_id)
        links = Links.of(settings, storage.presign_get, video_id, row)
        return status_view(row, links, datetime.now(UTC))

    def playable(video_id: str) -> dict[str, Any] | None:
        with connect() as conn:
            return reads.playable(conn, str(_valid_id(video_id)))

    app.include_router(playlists.router(settings, storage, playable))
    app.include_router(front_door.router(settings, storage, connect, produce_event))
    app.include_router(status_page.router())
    app.middleware("http")(auth.gate(settings))

    @app.exception_handler(NotFound)
    async def not_found(_req: Request, exc: NotFound) -> JSONResponse:
        return _error(404, f"no video {exc}")

    @app.exception_handler(Conflict)
    async def conflict(_req: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid request", "detail": exc.errors()})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        problems = []
        try:
            with connect() as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            problems.append(f"postgres: {exc}")
        try:
            kafka_reachable(settings, 3)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"kafka: {exc}")
        return _error(503, "; ".join(problems)) if problems else JSONResponse({"status": "ready"})

    @app.get("/videos/{video_id}")
    def get_video(request: Request, video_id: str) -> dict[str, Any]:
        return load(_valid_id(video_id), request.state.tenant)

    @app.get("/videos")
    def list_videos(
        request: Request,
        state: str | None = Query(None, pattern="^(" + "|".join(STATES) + ")$"),
        limit: int = Query(20, ge=1, le=200),
        cursor: str | None = Query(None, description="next_cursor of the previous page"),
    ) -> dict[str, Any]:
        before = _decode_cursor(cursor) if cursor else None
        with connect() as conn:
            rows = reads.videos(conn, request.state.tenant, state, limit, before)
        last = rows[-1] if len(rows) == limit else None
        return {
            "videos": [
                {**r, "updated_at": r["updated_at"].isoformat(), "percent": round(float(r["percent"]), 1)} for r in rows
            ],
            "next_cursor": last and _encode_cursor(last["updated_at"], last["video_id"]),
        }

    @app.post("/videos/{video_id}/retry", status_code=202)
    def retry(request: Request, video_id: str, segment: int | None = None) -> dict[str, Any]:
        """Re-drive a failed video from its original request, as a new generation; with
        `segment`, redo that video segment and reuse what the failed generation finished."""
        vid = _valid_id(video_id)
        with connect() as conn, conn.transaction():
            row = reads.video(conn, vid, request.state.tenant)
            if row is None:
                raise NotFound(vid)
            if row["state"] == "failed" and segment is not None:
                check_segment_retry(row, segment)
            try:
                claimed = claim_retry(conn, vid, segment)
            except LookupError as exc:
                raise Conflict(f"cannot retry: {exc}") from exc
            if claimed is None:
                raise Conflict(f"video {vid} is {row['state']}; only a failed video can be retried")
            # Produced inside the claim: if Kafka does not take it, the claim rolls back.
            produce_event("video.requested", vid, claimed)
        return {"video_id": vid, "generation": claimed["generation"]}

    @app.delete("/videos/{video_id}", status_code=202)
    def delete(request: Request, video_id: str) -> dict[str, Any]:
        """Cancel a running video - every stage drops its tasks and its work is removed - or
        delete a finished one's outputs. Either way the video ends as failed, kind
        `cancelled`, by an event (a replay of the projection agrees). A stitch already
        running when it came may still publish: a second DELETE removes that."""
        vid = _valid_id(video_id)
        with connect() as conn, conn.transaction():
            row = conn.execute(
                "SELECT state, generation, callback_url, error_kind FROM videos "
                "WHERE video_id = %s AND tenant = %s FOR UPDATE",
                (vid, request.state.tenant),
            ).fetchone()
            if row is None:
                raise NotFound(vid)
            state, generation, callback_url, kind = row
            ev = {"video_id": vid, "generation": generation, "tenant": request.state.tenant}
            running = state not in FINISHED
            why = "cancelled by its tenant" if running else "deleted by its tenant: its outputs are removed"
            # The tombstone first: from here every stage skips the generation's tasks and clears their work.
            Attempts(storage, settings.bucket_work, "tracker").bury(ev, why)
            removed = storage.remove_prefix(settings.bucket_outputs, keys.output(ev["tenant"], vid, ""))
            if kind == Kind.CANCELLED.value:  # deleted before: nothing more to say
                return {"video_id": vid, "generation": generation, "was": state, "outputs_removed": removed}
            env = envelope(
                video_id=vid,
                producer="tracker-api",
                generation=generation,
                tenant=ev["tenant"],
                event_id=str(uuid.uuid5(uuid.UUID(vid), f"delete/{generation}/{state}")),
            )
            produce_event("video.failed", vid, video_failed(env, "tracker", why, Kind.CANCELLED, callback_url))
        return {"video_id": vid, "generation": generation, "was": state, "outputs_removed": removed}

    @app.get("/videos/{video_id}/events", response_model=None)
    async def stream(
        request: Request, video_id: str, token: str | None = Query(None, description="`events` of GET /videos/{id}")
    ) -> StreamingResponse | JSONResponse:
        """The video's status each time it changes (server-sent events), until it ends.
        With a bearer token, or with the signed link the status gives (EventSource sends
        no headers)."""
        vid = _valid_id(video_id)
        tenant = auth.tenant_of(request)
        if token is not None:
            try:
                verify(settings.playback_secret, vid, token, time.time())
            except BadToken as exc:
                return _error(403, str(exc))
        await asyncio.to_thread(load, vid, tenant)  # 404 before the stream starts

        async def changes() -> AsyncIterator[str]:
            last, beat = None, time.monotonic()
            while True:
                view = await asyncio.to_thread(load, vid, tenant)
                snapshot = json.dumps(view, default=str)
                if snapshot != last:
                    last, beat = snapshot, time.monotonic()
                    yield f"event: status\ndata: {snapshot}\n\n"
                    if view["state"] in ("completed", "failed"):
                        return
                elif time.monotonic() - beat > 10:
                    beat = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(0.5)

        return StreamingResponse(changes(), media_type="text/event-stream")

    return app


def _encode_cursor(updated_at: datetime, video_id: str) -> str:
    return base64.urlsafe_b64encode(f"{updated_at.isoformat()}|{video_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        when, vid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(when), vid
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestValidationError(
            [{"loc": ["query", "cursor"], "msg": "not a cursor from this API", "type": "value_error"}]
        ) from exc
