"""A producer written by someone else starts a job: the event is built from the schema
file alone, with a plain confluent-kafka producer and fastavro. No reel import here."""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from fastavro.schema import fingerprint, to_parsing_canonical_form
from minio import Minio

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
pytestmark = pytest.mark.usefixtures("fleet")


def single_object(schema_file: Path, record: dict) -> bytes:
    raw = json.loads(schema_file.read_text())
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(raw), record)
    return header + body.getvalue()


def test_a_hand_built_event_completes(stack_env: dict[str, str], bunny: Path) -> None:
    s3 = Minio(
        f"127.0.0.1:{stack_env['REEL_S3_PORT']}",
        access_key=stack_env["REEL_S3_ACCESS_KEY"],
        secret_key=stack_env["REEL_S3_SECRET_KEY"],
        secure=False,
        region="us-east-1",
    )
    key = f"partner/{uuid.uuid4()}/bunny.mp4"
    s3.fput_object("reel-sources", key, str(bunny))
    video_id = str(uuid.uuid4())
    record = {
        "event_id": str(uuid.uuid4()),
        "video_id": video_id,
        "generation": 0,
        "track": "video",
        "segment_index": None,
        "attempt": 1,
        "produced_at": int(time.time() * 1000),
        "producer": "partner-app",
        "trace_id": None,
        "request_id": None,
        "callback_url": None,
        "source": {
            "bucket": "reel-sources",
            "key": key,
            "size": bunny.stat().st_size,
            "etag": hashlib.sha256(bunny.read_bytes()).hexdigest(),
        },
        "profile": "tiny",
        "formats": ["hls"],
    }
    bootstrap = f"127.0.0.1:{stack_env['REEL_KAFKA_PORT']}"
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(
        "video.requested", key=video_id.encode(), value=single_object(SCHEMAS / "video.requested.avsc", record)
    )
    assert producer.flush(30) == 0

    completed = json.loads((SCHEMAS / "video.completed.avsc").read_text())
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"partner-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    parts = consumer.list_topics("video.completed", timeout=10).topics["video.completed"].partitions
    consumer.assign([TopicPartition("video.completed", p, 0) for p in parts])
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.key() != video_id.encode():
                continue
            event = fastavro.schemaless_reader(io.BytesIO(msg.value()[10:]), fastavro.parse_schema(completed))
            assert event["video_id"] == video_id
            assert any(o["kind"] == "hls-master" for o in event["outputs"])
            return
    finally:
        consumer.close()
    raise AssertionError("the hand-built request did not complete")
