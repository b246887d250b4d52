"""The event contract: Avro schemas in schemas/, single-object encoding, topic map.

Wire format (Avro specification, "Single object encoding"): the two bytes C3 01,
the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form, then the Avro binary body. A reader finds the writer schema by
fingerprint among every .avsc under schemas/ (older versions included) and
resolves it against today's schema of the same record name - no registry server.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from reel.pipeline import DLQ_SUFFIX, dead_letter_topics
from reel.tenancy import DEFAULT as DEFAULT_TENANT

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
SCHEMAS_DIR = Path(__file__).parent / "schemas"  # a link to the repository's schemas/, packaged with reel

# One topic <-> one event type. Dead letters of every topic use dead.letter.
TOPIC_SCHEMAS: dict[str, str] = {
    "video.requested": "reel.events.VideoRequested",
    "video.split": "reel.events.VideoSplit",
    "segment.requested": "reel.events.SegmentRequested",
    "segment.pulled": "reel.events.SegmentPulled",
    "segment.transcoded": "reel.events.SegmentTranscoded",
    "segment.uploaded": "reel.events.SegmentUploaded",
    "video.completed": "reel.events.VideoCompleted",
    "video.failed": "reel.events.VideoFailed",
    "task.progress": "reel.events.TaskProgress",
}
DEAD_LETTER = "reel.events.DeadLetter"


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def all_topics() -> list[str]:
    """Every topic the stack creates: the event topics and each stage's dead letters."""
    return [*TOPIC_SCHEMAS, *dead_letter_topics()]


DAY_MS = 24 * 3600 * 1000


def topic_config(topic: str) -> dict[str, str]:
    """A topic's own config, where the broker's defaults will not do: progress is only
    worth a day (the tracker has projected it long before); every other topic keeps the
    broker's retention."""
    return {"retention.ms": str(DAY_MS)} if topic == "task.progress" else {}


def schema_for_topic(topic: str) -> str:
    return DEAD_LETTER if topic.endswith(DLQ_SUFFIX) else TOPIC_SCHEMAS[topic]


class ContractError(Exception):
    """A record that cannot be decoded; the worker loop dead-letters it."""

    kind = "malformed"


class UnknownSchema(ContractError):
    kind = "unknown-schema"


class MalformedEvent(ContractError):
    kind = "malformed"


@dataclass(frozen=True)
class Schema:
    name: str  # full record name, e.g. reel.events.VideoRequested
    path: Path
    parsed: dict[str, Any]
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint


def crc64_avro_fingerprint(canonical_form: str) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint the single-object header carries."""
    return bytes.fromhex(fingerprint(canonical_form, "CRC-64-AVRO"))  # fastavro: LE hex


def _load(path: Path) -> Schema:
    raw = json.loads(path.read_text())
    parsed: dict[str, Any] = fastavro.parse_schema(raw, _write_hint=False)  # type: ignore[assignment]
    canonical = to_parsing_canonical_form(raw)
    name = f"{raw.get('namespace', '')}.{raw['name']}".lstrip(".")
    return Schema(name, path, parsed, crc64_avro_fingerprint(canonical))


class Registry:
    """Today's schema per record name, and every known writer schema by fingerprint."""

    def __init__(self, schemas_dir: Path = SCHEMAS_DIR) -> None:
        self.current: dict[str, Schema] = {}
        self.by_fingerprint: dict[bytes, Schema] = {}
        for path in sorted(schemas_dir.glob("*.avsc")):
            schema = _load(path)
            self.current[schema.name] = schema
            self.by_fingerprint[schema.fingerprint] = schema
        for path in sorted(schemas_dir.glob("*/*.avsc")):  # older versions, e.g. schemas/v1/
            schema = _load(path)
            self.by_fingerprint.setdefault(schema.fingerprint, schema)

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        schema = self.current[name]
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema.parsed, record)
        return schema.header + body.getvalue()

    def decode(self, data: bytes, expect: str | None = None) -> dict[str, Any]:
        """Decode a single-object record, resolving its writer version to today's reader."""
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise MalformedEvent("not an Avro single-object record (bad magic or too short)")
        writer = self.by_fingerprint.get(data[2:HEADER_LEN])
        if writer is None:
            raise UnknownSchema(f"unknown writer schema fingerprint {data[2:HEADER_LEN].hex()}")
        if expect is not None and writer.name != expect:
            raise MalformedEvent(f"expected {expect}, got {writer.name}")
        reader = self.current.get(writer.name, writer)
        buf = io.BytesIO(data[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(buf, writer.parsed, reader.parsed)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError, TypeError) as exc:
            raise MalformedEvent(f"cannot decode {writer.name}: {exc!r}") from exc
        if buf.read(1):
            raise MalformedEvent(f"trailing bytes after {writer.name} body")
        return record  # type: ignore[return-value]

    def encode_for_topic(self, topic: str, record: dict[str, Any]) -> bytes:
        return self.encode(schema_for_topic(topic), record)

    def decode_for_topic(self, topic: str, data: bytes) -> dict[str, Any]:
        return self.decode(data, expect=schema_for_topic(topic))


def envelope(
    *,
    video_id: str,
    producer: str,
    generation: int = 0,
    track: str = "video",
    segment_index: int | None = None,
    attempt: int = 1,
    event_id: str | None = None,
    trace_id: str | None = None,
    tenant: str = DEFAULT_TENANT,
) -> dict[str, Any]:
    """The envelope fields every event carries."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "video_id": video_id,
        "generation": generation,
        "track": track,
        "segment_index": segment_index,
        "attempt": attempt,
        "produced_at": int(time.time() * 1000),
        "producer": producer,
        "trace_id": trace_id,
        "tenant": tenant,
    }


def task_key(video_id: str, track: str, segment_index: int | None) -> str:
    """Key of segment.requested / segment.pulled: spreads segments over partitions."""
    return f"{video_id}:{track}:{'-' if segment_index is None else segment_index}"


# What a segment task carries at every stage, so no stage needs a lookup.
TASK_FIELDS = (
    "source",
    "profile",
    "formats",
    "fps_num",
    "fps_den",
    "gop_frames",
    "start_frame",
    "frame_count",
    "segment_count",
    "total_frames",
    "video_start",
    "has_audio",
    "display_width",
    "display_height",
)


def task_fields(event: dict[str, Any]) -> dict[str, Any]:
    return {k: event[k] for k in TASK_FIELDS}
