"""Handlers in milliseconds: an object store in a folder and a stage run on one event.

`run_stage(stage, event)` encodes the event with the real Avro contract, decodes it as the
loop would, runs the handler, and round-trips every output through the contract too, so a
handler that produces a record its schema refuses fails here, not on a broker. The
storage keeps each object as a file, so ffmpeg reads a "presigned URL" as a local path.
The real broker, S3 server and kills stay in tests/integration and tests/e2e.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from reel.attempts import STARTED, Attempt, Marker
from reel.contract import Registry, schema_for_topic
from reel.storage import ChecksumMismatch, ObjectMissing, ObjectRef, sha256_file
from reel.task import Output, Stage, Task


class FolderStorage:
    """The calls handlers make of reel.storage.Storage, on a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta: dict[tuple[str, str], str] = {}  # sha256 metadata, as Storage writes it

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def put_bytes(self, bucket: str, key: str, data: bytes) -> ObjectRef:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.meta[(bucket, key)] = hashlib.sha256(data).hexdigest()
        return ObjectRef(bucket, key, self.meta[(bucket, key)], len(data))

    def put_file(self, bucket: str, key: str, path: Path, progress: Any = None) -> ObjectRef:
        return self.put_bytes(bucket, key, path.read_bytes())

    def copy(self, ref: ObjectRef, bucket: str, key: str) -> ObjectRef:
        self._must_exist(ref.bucket, ref.key)
        return self.put_bytes(bucket, key, self._path(ref.bucket, ref.key).read_bytes())

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self._must_exist(bucket, key).read_bytes()

    def get_range(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        data = self.get_bytes(bucket, key)
        return data[offset : offset + length] if length else data[offset:]

    def get_file(self, ref: ObjectRef, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._must_exist(ref.bucket, ref.key), path)
        if sha256_file(path) != ref.sha256:
            raise ChecksumMismatch(f"{ref.bucket}/{ref.key}")
        return path

    def stat(self, bucket: str, key: str) -> dict[str, object]:
        path = self._must_exist(bucket, key)
        return {"size": path.stat().st_size, "etag": "", "sha256": self.meta.get((bucket, key)), "last_modified": None}

    def ref(self, bucket: str, key: str) -> ObjectRef:
        st = self.stat(bucket, key)
        return ObjectRef(bucket, key, str(st["sha256"]), int(st["size"]))  # type: ignore[call-overload]

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def list(self, bucket: str, prefix: str = "", recursive: bool = True) -> list[str]:
        base = self.root / bucket
        keys = [p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()] if base.exists() else []
        return sorted(k for k in keys if k.startswith(prefix))

    def remove_prefix(self, bucket: str, prefix: str) -> int:
        keys = self.list(bucket, prefix)
        for key in keys:
            self._path(bucket, key).unlink()
        return len(keys)

    def presign_get(self, bucket: str, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return str(self._path(bucket, key))

    def _must_exist(self, bucket: str, key: str) -> Path:
        path = self._path(bucket, key)
        if not path.is_file():
            raise ObjectMissing(f"{bucket}/{key} does not exist (NoSuchKey)")
        return path


def run_stage(stage: Stage, event: dict[str, Any], attempt: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """The stage's handler on one event, through the contract both ways: (topic, record)."""
    registry = Registry()
    value = registry.encode(stage.schema or schema_for_topic(stage.topic), event)
    decoded = registry.decode(value, stage.schema or schema_for_topic(stage.topic))
    attempt_id = uuid.uuid4().hex
    marker = Marker(attempt_id, STARTED, f"{stage.name}-0", 0.0)
    task = Task(stage.topic, 0, 0, None, value, decoded, Attempt(attempt_id, attempt, "", marker), f"{stage.name}-0")
    return [(o.topic, round_trip(registry, o)) for o in stage.handle(task)]


def round_trip(registry: Registry, output: Output) -> dict[str, Any]:
    schema = output.schema or schema_for_topic(output.topic)
    return registry.decode(registry.encode(schema, output.record), schema)
