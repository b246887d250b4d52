"""Placing a transcoded segment under its video's generation, and knowing when all are in.

The placed parts (`reel-work/{video}/{generation}/placed/`) are the pusher's memory of which
segments have arrived, so a restarted pusher needs nothing from its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reel import keys
from reel.faults import fault_point
from reel.ladder import Rendition
from reel.parallel import in_threads
from reel.storage import ObjectRef
from reel.task import Deps


def place(deps: Deps, ev: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rendition of the segment copied under the generation (server side); the
    renditions as placed. The transcoder checked them before uploading; the bytes are
    checked against their sha256 when the join fetches them."""

    def one(r: dict[str, Any]) -> dict[str, Any]:
        source = ObjectRef.from_record(r["object"])
        dest = deps.storage.copy(source, deps.settings.bucket_work, keys.placed(ev, r["rung"]))
        fault_point("mid-place")
        return {**r, "object": dest.as_record()}

    return in_threads(one, ev["renditions"])


def expected_parts(ev: dict[str, Any], rends: list[Rendition]) -> set[str]:
    """rung/part names of every placed part the video needs."""
    parts = {f"{r.name}/{i:05d}.mp4" for r in rends for i in range(ev["segment_count"])}
    return parts | ({"audio/audio.m4a"} if ev["has_audio"] else set())


def all_in(deps: Deps, ev: dict[str, Any], rends: list[Rendition]) -> bool:
    prefix = keys.placed_prefix(ev)
    have = {k[len(prefix) :] for k in deps.storage.list(deps.settings.bucket_work, prefix)}
    return expected_parts(ev, rends) <= have


def fetch(deps: Deps, ev: dict[str, Any], part: str, dest: Path) -> Path:
    """A placed part (`rung/part`), downloaded and checked against its sha256."""
    ref = deps.storage.ref(deps.settings.bucket_work, keys.placed_prefix(ev) + part)
    return deps.storage.get_file(ref, dest)
