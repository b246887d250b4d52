"""The front door: a tenant creates a video over HTTP, uploads its source straight to the
store through presigned part URLs, and starts it. The client holds no Kafka or S3
credentials; the tenant in the video's request is the one its token names.

- `POST /videos` answers the video id (uuid5 of tenant + request id, or of tenant + sha256
  + profile + formats, as `reel submit` computes it) and a multipart upload into the
  tenant's prefix of the sources bucket: one presigned URL per part still missing. Asked
  again with the same request, it answers the same upload and leaves out the parts the
  store already holds - an interrupted upload resumes. A source the tenant already
  stored (same sha256) needs no upload at all.
- `POST /videos/{id}/start` completes the upload (every part present, the sizes adding
  up) and produces `video.requested`; started twice, it is one request.

The sha256 is the client's word: a client that lies about it only misnames its own
tenant's source (ids and keys are the tenant's own).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, Literal

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from reel import callback_target, keys, ladder, tenancy
from reel.settings import Settings
from reel.storage import PART_SIZE, Storage
from reel.submit import request as video_requested
from reel.submit import video_id_for

MAX_PARTS = 10_000  # S3's limit per upload
MAX_SOURCE = 5 * 1024**4  # S3's largest object
UPLOAD_URL_TTL = timedelta(hours=6)
SAFE_ID = r"^[A-Za-z0-9._:=+-]{1,128}$"


class NewVideo(BaseModel):
    file_name: str = Field(..., min_length=1, max_length=255, description="kept, made safe, in the source's key")
    size: int = Field(..., gt=0, le=MAX_SOURCE, description="bytes")
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$", description="of the whole file, lowercase hex")
    profile: str = "default"
    formats: list[Literal["hls", "mp4"]] = Field(["hls", "mp4"], min_length=1)  # pydantic copies it per request
    request_id: str | None = Field(None, pattern=SAFE_ID, description="your id: makes a resubmit the same video")
    callback_url: str | None = Field(None, max_length=2048)


def part_size(size: int) -> int:
    """Parts of PART_SIZE, larger only when a file would need more than S3's 10,000."""
    return max(PART_SIZE, math.ceil(size / MAX_PARTS))


def expected_parts(size: int, part: int) -> dict[int, int]:
    """Part number -> its size, for a file of `size` bytes cut in parts of `part`."""
    count = math.ceil(size / part)
    return {n: part if n < count else size - part * (count - 1) for n in range(1, count + 1)}


def router(
    settings: Settings,
    storage: Storage,
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    produce_event: Callable[[str, str, dict[str, Any]], None],
) -> APIRouter:
    api = APIRouter(tags=["front door"])
    bucket = settings.bucket_sources
    allow = callback_target.allow_list(settings.callback_allow)

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": message})

    @api.post("/videos", status_code=201)
    def create(req: Request, new: NewVideo) -> Any:
        """Create a video, or find the one this request already made; returns its upload."""
        tenant = req.state.tenant
        try:
            ladder.load(new.profile, settings.profiles_dir)
            if new.callback_url:
                callback_target.check(new.callback_url, allow)
        except (ladder.UnknownProfile, callback_target.Refused) as exc:
            return refuse(422, str(exc))
        formats = [str(f) for f in new.formats]
        vid = video_id_for(tenant, new.request_id, new.sha256, new.profile, formats)
        name = tenancy.safe_file_name(new.file_name)  # only this is kept: no NUL or path reaches a row or key
        key = keys.upload(tenant, new.sha256, name)
        asked = new.model_dump() | {"file_name": name, "formats": formats, "key": key}
        with connect() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM uploads WHERE video_id = %s FOR UPDATE", (vid,)).fetchone()
            known = cur.execute("SELECT 1 FROM videos WHERE video_id = %s", (vid,)).fetchone()
            if (row and row["started_at"]) or known:
                return JSONResponse({"video_id": vid, "created": False, "upload": None}, status_code=200)
            if row:
                first = row["request"]
                if (first["sha256"], first["size"]) != (new.sha256, new.size):
                    return refuse(409, f"request id {new.request_id} was used for another file; use a new one")
                asked = first  # a resume: the first request stands
            upload_id = None
            if not storage.exists(bucket, asked["key"]):
                open_ids = storage.open_uploads(bucket, asked["key"])
                upload_id = open_ids[-1] if open_ids else storage.create_upload(bucket, asked["key"], asked["sha256"])
            cur.execute(
                "INSERT INTO uploads (video_id, tenant, request, upload_id) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (video_id) DO UPDATE SET upload_id = EXCLUDED.upload_id",
                (vid, tenant, Jsonb(asked), upload_id),
            )
        return {"video_id": vid, "created": row is None, "upload": upload_view(asked, upload_id)}

    def upload_view(asked: dict[str, Any], upload_id: str | None) -> dict[str, Any] | None:
        if upload_id is None:
            return None
        part = part_size(asked["size"])
        held = storage.uploaded_parts(bucket, asked["key"], upload_id)
        wanted = expected_parts(asked["size"], part)
        done = sorted(n for n, size in wanted.items() if n in held and held[n][1] == size)
        urls = [
            {"number": n, "size": size, "url": storage.presign_part(bucket, asked["key"], upload_id, n, UPLOAD_URL_TTL)}
            for n, size in wanted.items()
            if n not in done
        ]
        return {"part_size": part, "parts": urls, "done": done, "expires_in_s": int(UPLOAD_URL_TTL.total_seconds())}

    @api.post("/videos/{video_id}/start", status_code=202)
    def start(req: Request, video_id: str) -> Any:
        """Complete the upload and ask for the video to be processed (idempotent)."""
        tenant = req.state.tenant
        with connect() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM uploads WHERE video_id = %s AND tenant = %s FOR UPDATE", (video_id, tenant)
            ).fetchone()
            if row is None:
                return refuse(404, f"no video {video_id}")
            asked = row["request"]
            if row["started_at"] is None:
                if row["upload_id"] is not None:
                    problem = complete(asked, row["upload_id"])
                    if problem:
                        return refuse(409, problem)
                size = storage.ref(bucket, asked["key"]).size
                if size != asked["size"]:
                    return refuse(409, f"the stored source has {size} bytes, not the {asked['size']} announced")
                source = {"bucket": bucket, "key": asked["key"], "etag": asked["sha256"], "size": size}
                record = video_requested(
                    tenant,
                    video_id,
                    "tracker-front-door",
                    asked["request_id"],
                    asked["profile"],
                    asked["formats"],
                    asked["callback_url"],
                    source,
                )
                # Produced inside the row's lock: if Kafka does not take it, nothing is marked started.
                produce_event("video.requested", video_id, record)
                cur.execute("UPDATE uploads SET started_at = now() WHERE video_id = %s", (video_id,))
        return {"video_id": video_id, "submitted_ms": int(time.time() * 1000)}

    def complete(asked: dict[str, Any], upload_id: str) -> str | None:
        """Complete the multipart upload, or say what is missing."""
        wanted = expected_parts(asked["size"], part_size(asked["size"]))
        held = storage.uploaded_parts(bucket, asked["key"], upload_id)
        missing = [n for n, size in wanted.items() if n not in held or held[n][1] != size]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            return f"the upload is not complete: parts {shown} missing or of the wrong size (POST /videos resumes it)"
        storage.complete_upload(bucket, asked["key"], upload_id, {n: held[n][0] for n in wanted})
        return None

    return api
