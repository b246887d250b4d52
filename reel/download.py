"""`reel get`: a completed video's outputs downloaded, each checked against the manifest.

The manifest lists every output object with its size and sha256. Each file is fetched
into `<name>.part` by ranged GETs, so a cut download - in this run or an earlier one -
goes on from the bytes it has; it takes its name only once its sha256 matches. A
destination already holding other files is refused: nothing of the user's is overwritten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reel import keys, tenancy
from reel.parallel import in_threads
from reel.storage import Storage, sha256_file

PART = ".part"
KINDS = {"mp4": ("mp4", "poster"), "hls": ("hls-master", "hls-playlist", "hls-segment", "poster")}


class GetError(Exception):
    """The request cannot be met as asked: one line saying why."""


@dataclass(frozen=True)
class Wanted:
    key: str
    path: str  # under the destination, as under the video's folder in the bucket
    size: int
    sha256: str


def select(manifest: dict[str, Any], rungs: list[str], fmt: str | None) -> list[Wanted]:
    """The manifest's objects a request asks for (pure). With rungs, HLS gives those
    renditions and the audio, not the master (it names the others)."""
    if fmt is not None and fmt not in KINDS:
        raise GetError(f"unknown format {fmt!r}; use mp4 or hls")
    rows = manifest["outputs"]
    known = sorted({r["rung"] for r in rows if r["kind"] == "mp4" or r["kind"] == "hls-playlist"} - {"audio"})
    if unknown := sorted(set(rungs) - set(known)):
        raise GetError(f"no rung {', '.join(unknown)} in video {manifest['video_id']}; it has {', '.join(known)}")
    kinds = KINDS[fmt] if fmt else {k for ks in KINDS.values() for k in ks}
    if fmt and not any(r["kind"] in kinds and r["kind"] != "poster" for r in rows):
        raise GetError(f"video {manifest['video_id']} was not made in {fmt}")
    prefix = keys.output(manifest.get("tenant", tenancy.DEFAULT), manifest["video_id"], "")
    wanted = []
    for r in rows:
        if r["kind"] not in kinds:
            continue
        if rungs and r["kind"] != "poster" and (r["kind"] == "hls-master" or r["rung"] not in (*rungs, "audio")):
            continue
        wanted.append(Wanted(r["key"], r["key"].removeprefix(prefix), r["size"], r["sha256"]))
    return wanted


def check_destination(dest: Path, wanted: list[Wanted], manifest: bytes) -> list[Wanted]:
    """What is still to fetch. Refuses a destination holding anything but these files
    (or their parts); a finished file whose bytes differ is someone else's too."""
    if dest.exists() and not dest.is_dir():
        raise GetError(f"{dest} exists and is not a folder")
    if not dest.exists():
        return wanted
    ours = {w.path for w in wanted} | {w.path + PART for w in wanted} | {"manifest.json"}
    foreign = sorted(
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if p.is_file() and p.relative_to(dest).as_posix() not in ours
    )
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise GetError(f"{dest} holds other files ({', '.join(foreign[:3])}{more}): choose an empty or new folder")
    if (dest / "manifest.json").exists() and (dest / "manifest.json").read_bytes() != manifest:
        raise GetError(f"{dest} holds another video's manifest.json: choose another folder")
    todo = []
    for w in wanted:
        done = dest / w.path
        if not done.exists():
            todo.append(w)
        elif done.stat().st_size != w.size or sha256_file(done) != w.sha256:
            raise GetError(f"{done} exists with other content than video's {w.path}: choose another folder")
    return todo


def fetch(storage: Storage, bucket: str, w: Wanted, dest: Path, progress: Callable[[int], None]) -> None:
    """One object into dest/<path>, resumed from its part, checked before it is named."""
    final = dest / w.path
    part = final.with_name(final.name + PART)
    if part.exists() and part.stat().st_size > w.size:
        part.unlink()  # longer than the object: not a part of it
    if part.exists():
        progress(part.stat().st_size)  # what an earlier run already has
    storage.download(bucket, w.key, part, progress)
    if sha256_file(part) != w.sha256:
        part.unlink()  # a part of something else: fetched again, whole
        storage.download(bucket, w.key, part, progress)
        if sha256_file(part) != w.sha256:
            raise GetError(f"{w.key} does not match the manifest's sha256 (fetched twice)")
    part.rename(final)


def get(
    storage: Storage,
    bucket: str,
    manifest_bytes: bytes,
    dest: Path,
    rungs: list[str],
    fmt: str | None,
    on_start: Callable[[list[Wanted], int], Callable[[Wanted], Callable[[int], None]]],
) -> tuple[int, int]:
    """Download what is asked into dest. on_start(todo, already) returns, for each file, its
    progress callback. Returns (files fetched, files already there and verified)."""
    manifest = json.loads(manifest_bytes)
    wanted = select(manifest, rungs, fmt)
    todo = check_destination(dest, wanted, manifest_bytes)
    track = on_start(todo, len(wanted) - len(todo))
    dest.mkdir(parents=True, exist_ok=True)
    in_threads(lambda w: fetch(storage, bucket, w, dest, track(w)), todo)
    (dest / "manifest.json").write_bytes(manifest_bytes)
    return len(todo), len(wanted) - len(todo)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
