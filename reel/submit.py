"""Submitting a video: upload the source (resumable), produce video.requested, and
follow the video's events until it completes or fails.

Idempotent: video_id = uuid5(tenant + request id) when the client gives one, else
uuid5(tenant + source sha256 + profile + formats); a duplicate returns the existing id, and
two tenants sending the same file get two videos. This is the direct path, for trusted
producers holding Kafka and S3 credentials: the tenant is whatever they say. Clients go
through the tracker's front door instead, which stamps the tenant its token names.
The source is stored content-addressed, so re-uploading the same file is skipped;
its sha256 stands in for the ETag (a multipart ETag is not a content hash).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from reel import keys, ladder, tenancy
from reel.contract import Registry, envelope
from reel.kafka import client_config, offsets_since, producer_config
from reel.settings import Settings
from reel.storage import Storage, sha256_file

ID_NS = uuid.UUID("0d6c8f2e-6a5b-4c1e-9a51-7f3d2b9e4c10")
FORMATS = ("hls", "mp4")


class SubmitError(Exception):
    """Bad input to submit: one line saying what is wrong."""


@dataclass(frozen=True)
class Submission:
    video_id: str
    created: bool  # False: a duplicate of an earlier submission
    submitted_ms: int


def video_id_for(tenant: str, request_id: str | None, sha256: str, profile: str, formats: list[str]) -> str:
    name = f"request:{request_id}" if request_id else f"source:{sha256}:{profile}:{','.join(formats)}"
    if tenant != tenancy.DEFAULT:  # the default tenant's ids are those of before tenants
        name = f"tenant:{tenant}:{name}"
    return str(uuid.uuid5(ID_NS, name))


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise SubmitError(f"unknown format {','.join(unknown) or text!r}; use hls, mp4 or hls,mp4")
    return formats


def submit(
    settings: Settings,
    storage: Storage,
    path: Path,
    profile: str = "default",
    formats: list[str] | None = None,
    request_id: str | None = None,
    callback_url: str | None = None,
    progress: Callable[[int], None] | None = None,
    tenant: str = tenancy.DEFAULT,
) -> Submission:
    formats = formats or list(FORMATS)
    try:
        tenancy.check_tenant(tenant)
    except tenancy.Refused as exc:
        raise SubmitError(str(exc)) from exc
    if not path.is_file():
        raise SubmitError(f"no such file: {path}")
    try:
        ladder.load(profile, settings.profiles_dir)
    except ladder.UnknownProfile as exc:
        raise SubmitError(str(exc)) from exc
    sha = sha256_file(path)
    vid = video_id_for(tenant, request_id, sha, profile, formats)
    marker = keys.submission(tenant, vid)
    if storage.exists(settings.bucket_work, marker):
        return Submission(vid, False, json.loads(storage.get_bytes(settings.bucket_work, marker))["at"])
    key = keys.upload(tenant, sha, tenancy.safe_file_name(path.name))
    if not storage.exists(settings.bucket_sources, key):
        storage.put_file(settings.bucket_sources, key, path, progress)
    elif progress:
        progress(path.stat().st_size)
    now = int(time.time() * 1000)
    source = {"bucket": settings.bucket_sources, "key": key, "etag": sha, "size": path.stat().st_size}
    record = request(tenant, vid, "reel-submit", request_id, profile, formats, callback_url, source)
    produce(settings, "video.requested", vid, record)
    storage.put_bytes(settings.bucket_work, marker, json.dumps({"at": now, "source": key}).encode())
    return Submission(vid, True, now)


def request(
    tenant: str,
    video_id: str,
    producer: str,
    request_id: str | None,
    profile: str,
    formats: list[str],
    callback_url: str | None,
    source: dict[str, Any],
) -> dict[str, Any]:
    """A video's video.requested; its event id follows from the video id, so a request
    sent twice is one event to every reader."""
    return {
        **envelope(video_id=video_id, producer=producer, event_id=str(uuid.uuid5(ID_NS, video_id)), tenant=tenant),
        "request_id": request_id,
        "profile": profile,
        "formats": formats,
        "callback_url": callback_url,
        "source": source,
    }


def produce(settings: Settings, topic: str, key: str, record: dict[str, Any]) -> None:
    producer = Producer(producer_config(settings, "reel-cli", None))
    producer.produce(topic, key=key.encode(), value=Registry().encode_for_topic(topic, record))
    if producer.flush(30) != 0:
        raise SubmitError(f"Kafka at {settings.kafka_bootstrap} did not take the event")


def wait(settings: Settings, video_id: str, since_ms: int, timeout: float) -> dict[str, Any]:
    """The video's video.completed or video.failed event, read from Kafka."""
    registry = Registry()
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"reel-wait-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign(offsets_since(settings, ["video.completed", "video.failed"], since_ms - 5000))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.key() != video_id.encode():
                continue
            event = registry.decode_for_topic(msg.topic(), msg.value())
            return {"topic": msg.topic(), **event}
        raise TimeoutError(f"video {video_id} did not finish within {timeout:.0f}s")
    finally:
        consumer.close()
