"""The wire contract: schemas, fingerprints, single-object encoding, schema evolution."""

from __future__ import annotations

import io
import json
from pathlib import Path

import avro.schema
import fastavro
import fastavro.schema
import pytest

from reel.contract import (
    MAGIC,
    SCHEMAS_DIR,
    TOPIC_SCHEMAS,
    MalformedEvent,
    Registry,
    UnknownSchema,
    all_topics,
    crc64_avro_fingerprint,
    envelope,
    schema_for_topic,
)
from reel.pipeline import AUDIO_COST

SCHEMAS = SCHEMAS_DIR  # reel/schemas, the link to schemas/ that ships with the package
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def all_schema_files() -> list[Path]:
    return sorted(SCHEMAS.rglob("*.avsc"))


@pytest.mark.parametrize("path", all_schema_files(), ids=lambda p: str(p.relative_to(SCHEMAS)))
def test_fingerprint_agrees_with_apache_avro(registry: Registry, path: Path) -> None:
    parsed = avro.schema.parse(path.read_text())
    # Apache's implementation: CRC-64-AVRO of the Parsing Canonical Form, as bytes.
    expected = bytes(parsed.fingerprint("CRC-64-AVRO"))
    ours = {s.path: s.fingerprint for s in registry.by_fingerprint.values()}
    assert ours[path] == expected


def test_every_topic_has_a_current_self_contained_schema(registry: Registry) -> None:
    for topic in all_topics():
        name = schema_for_topic(topic)
        assert name in registry.current, topic
    for path in SCHEMAS.glob("*.avsc"):
        raw = json.loads(path.read_text())
        fields = {f["name"] for f in raw["fields"]}
        assert {
            "event_id",
            "video_id",
            "generation",
            "track",
            "segment_index",
            "attempt",
            "produced_at",
            "producer",
            "trace_id",
        } <= fields, path.name
    assert len(set(TOPIC_SCHEMAS.values())) == len(TOPIC_SCHEMAS)  # one topic <-> one type


def test_header_is_avro_single_object_encoding(registry: Registry) -> None:
    rec = {
        **envelope(video_id="v", producer="test"),
        "stage": "pull",
        "reason": "x",
        "kind": "bad_input",
        "detail": None,
        "callback_url": None,
    }
    data = registry.encode_for_topic("video.failed", rec)
    schema = registry.current["reel.events.VideoFailed"]
    assert data[:2] == b"\xc3\x01" == MAGIC
    # 8 bytes, little-endian CRC-64-AVRO of the canonical form.
    parsed = avro.schema.parse(schema.path.read_text())
    assert data[2:10] == bytes(parsed.fingerprint("CRC-64-AVRO"))
    decoded = registry.decode_for_topic("video.failed", data)
    assert decoded["reason"] == "x" and decoded["video_id"] == "v"


def test_yesterdays_bytes_decode_with_todays_reader(registry: Registry) -> None:
    old = (FIXTURES / "video.requested.v1.bin").read_bytes()
    v1 = json.loads((SCHEMAS / "v1" / "video.requested.avsc").read_text())
    now = json.loads((SCHEMAS / "video.requested.avsc").read_text())
    # The versions really differ: these fields are new, with defaults.
    assert {f["name"] for f in now["fields"]} - {f["name"] for f in v1["fields"]} == {
        "trace_id",
        "callback_url",
        "reuse_generation",
        "redo_segments",
        "tenant",
    }
    assert old[2:10] != registry.current["reel.events.VideoRequested"].fingerprint
    rec = registry.decode_for_topic("video.requested", old)
    assert rec["trace_id"] is None and rec["callback_url"] is None
    assert rec["reuse_generation"] is None and rec["redo_segments"] == []
    assert rec["tenant"] == "default"  # written before tenants: the default tenant's
    assert rec["request_id"] == "req-1" and rec["source"]["key"] == "uploads/clip.mp4"


def test_unknown_fingerprint_raises_typed_error(registry: Registry) -> None:
    data = MAGIC + b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x00"
    with pytest.raises(UnknownSchema):
        registry.decode(data)


@pytest.mark.parametrize("cut", [3, 10, 20, -1])
def test_truncated_body_raises_typed_error(registry: Registry, cut: int) -> None:
    data = (FIXTURES / "video.requested.v1.bin").read_bytes()
    with pytest.raises(MalformedEvent):
        registry.decode(data[:cut])


def test_not_avro_raises_typed_error(registry: Registry) -> None:
    with pytest.raises(MalformedEvent):
        registry.decode(b'{"video_id": "json is not our wire format"}')


def test_wrong_event_on_topic_is_rejected(registry: Registry) -> None:
    data = (FIXTURES / "video.requested.v1.bin").read_bytes()
    with pytest.raises(MalformedEvent):
        registry.decode_for_topic("segment.pulled", data)


def test_crc64_avro_matches_the_specification_vector() -> None:
    # Avro's own test vectors (share/test/data/schema-tests.txt): "null" -> 7195948357588979594.
    assert crc64_avro_fingerprint('"null"') == (7195948357588979594).to_bytes(8, "little")


@pytest.mark.parametrize("name", ["video.failed", "dead.letter"])
def test_failures_written_before_kinds_decode_as_unknown(registry: Registry, name: str) -> None:
    old_raw = json.loads((SCHEMAS / "v2" / f"{name}.avsc").read_text())
    now_raw = json.loads((SCHEMAS / f"{name}.avsc").read_text())
    assert {f["name"] for f in now_raw["fields"]} - {f["name"] for f in old_raw["fields"]} == {"kind", "tenant"}
    old = fastavro.parse_schema(old_raw)
    record = {
        **envelope(video_id="v", producer="old"),
        "stage": "puller",
        "reason": "truncated",
        "detail": None,
        "callback_url": None,
        "original_topic": "t",
        "original_partition": 0,
        "original_offset": 1,
        "original_key": None,
        "original_value": b"",
        "error_kind": "permanent",
        "failed_attempts": 1,
    }
    body = io.BytesIO()
    fastavro.schemaless_writer(body, old, {f["name"]: record[f["name"]] for f in old_raw["fields"]})
    header = b"\xc3\x01" + crc64_avro_fingerprint(fastavro.schema.to_parsing_canonical_form(old_raw))
    decoded = registry.decode(header + body.getvalue())
    assert decoded["kind"] == "unknown" and decoded["reason"] == "truncated"
    today = registry.decode(
        registry.encode(registry.by_fingerprint[header[2:]].name, {**record, "kind": "stitch_gate"})
    )
    assert today["kind"] == "stitch_gate"


def test_every_kind_of_failure_is_a_symbol_of_the_schema() -> None:
    from reel.task import Kind

    for name in ("video.failed", "dead.letter"):
        raw = json.loads((SCHEMAS / f"{name}.avsc").read_text())
        kind = next(f for f in raw["fields"] if f["name"] == "kind")
        assert kind["type"]["symbols"] == [k.value for k in Kind], name


# Fields added since the release before tenants, with the value an old event reads as.
ADDED_AFTER_TENANTS = {"segment.requested": {"lane_guessed": False}, "video.split": {"audio_share": AUDIO_COST}}


@pytest.mark.parametrize("path", sorted((SCHEMAS / "v3").glob("*.avsc")), ids=lambda p: p.stem)
def test_events_written_before_tenants_read_as_the_default_tenant(registry: Registry, path: Path) -> None:
    """Every event type of the release before tenants: its bytes decode with today's
    reader, as the default tenant's, and today's schema differs from it by that field
    and the defaulted ones added since."""
    old_raw = json.loads(path.read_text())
    now_raw = json.loads((SCHEMAS / path.name).read_text())
    added = {"tenant": "default", **ADDED_AFTER_TENANTS.get(path.stem, {})}
    assert {f["name"] for f in now_raw["fields"]} - {f["name"] for f in old_raw["fields"]} == set(added)
    name = f"{old_raw['namespace']}.{old_raw['name']}"
    record = fastavro.schemaless_reader(  # any record of the old schema: its defaults and zero values
        io.BytesIO(b"\x00" * 4096), fastavro.parse_schema(old_raw)
    )
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old_raw), record)
    header = b"\xc3\x01" + crc64_avro_fingerprint(fastavro.schema.to_parsing_canonical_form(old_raw))
    decoded = registry.decode(header + body.getvalue(), expect=name)
    assert {k: decoded[k] for k in added} == added
    assert {k: v for k, v in decoded.items() if k not in added} == record
