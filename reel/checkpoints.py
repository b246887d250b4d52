"""Checkpoints: a task's finished work, kept until it is committed.

The loop saves a handler's outputs (Avro-encoded, as they would be produced) just before
the commit transaction. An attempt that died between its work and its commit leaves them;
the next attempt reuses them if every object they point at is still stored, instead of
doing the work again. `reel retry --segment` reads a failed generation's checkpoints the
same way. Under the video's generation prefix, so a failure's clean-up removes them too.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from reel import keys
from reel.contract import Registry, schema_for_topic
from reel.storage import Storage
from reel.task import Output


def object_refs(value: Any) -> list[tuple[str, str]]:
    """Every (bucket, key) an event points at, however deep."""
    if isinstance(value, dict):
        own = [(value["bucket"], value["key"])] if isinstance(value.get("bucket"), str) and "key" in value else []
        return own + [ref for v in value.values() for ref in object_refs(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in object_refs(v)]
    return []


class Checkpoints:
    def __init__(self, storage: Storage, bucket: str, registry: Registry, stage: str) -> None:
        self.storage, self.bucket, self.registry, self.stage = storage, bucket, registry, stage

    def save(self, event: dict[str, Any], outputs: list[Output]) -> None:
        saved = [
            {
                "topic": o.topic,
                "key": o.key,
                "schema": o.schema,
                "partition": o.partition,
                "value": base64.b64encode(
                    self.registry.encode(o.schema or schema_for_topic(o.topic), o.record)
                ).decode(),
            }
            for o in outputs
        ]
        self.storage.put_bytes(self.bucket, keys.checkpoint(self.stage, event), json.dumps(saved).encode())

    def load(self, event: dict[str, Any]) -> list[Output] | None:
        """The outputs saved for this task, or None."""
        key = keys.checkpoint(self.stage, event)
        if not self.storage.exists(self.bucket, key):
            return None
        saved = json.loads(self.storage.get_bytes(self.bucket, key))
        return [
            Output(
                o["topic"], o["key"], self.registry.decode(base64.b64decode(o["value"])), o["schema"], o["partition"]
            )
            for o in saved
        ]

    def reusable(self, event: dict[str, Any]) -> list[Output] | None:
        """The saved outputs if every object they point at still exists, else None."""
        outputs = self.load(event)
        if not outputs or not all(self.storage.exists(b, k) for o in outputs for b, k in object_refs(o.record)):
            return None
        return outputs
