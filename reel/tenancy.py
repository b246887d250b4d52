"""Tenants: whose a video is, and the one prefix of each bucket its objects may live under.

Every event names its tenant (an event written before tenants existed reads as `default`).
The default tenant keeps the layout reel had before tenants, so objects written by an
earlier release stay where the new one looks for them; every other tenant lives under
`tenants/{name}/` in each bucket. The checks here are pure: the worker loop refuses an
event whose keys leave its tenant's prefix before any handler reads or writes storage.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterator
from typing import Any

DEFAULT = "default"
TENANTS_DIR = "tenants/"
MAX_KEY = 1024
MAX_FILE_NAME = 128

_TENANT = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
# ASCII letters, digits and . _ - = + only, in /-separated parts: no %-escapes, no
# backslashes, no NUL or control characters, no Unicode look-alikes to normalise.
_KEY_PART = re.compile(r"[A-Za-z0-9._=+-]+")


class Refused(ValueError):
    """A name or key a tenant may not use; the message says why."""


def check_tenant(name: str) -> str:
    if not isinstance(name, str) or not _TENANT.fullmatch(name):
        raise Refused(f"not a tenant name: {name!r} (1-32 lowercase letters, digits and inner dashes)")
    return name


def prefix(tenant: str) -> str:
    """The tenant's prefix in every bucket."""
    return "" if check_tenant(tenant) == DEFAULT else f"{TENANTS_DIR}{tenant}/"


def check_key(tenant: str, key: str) -> str:
    """`key`, if it is a plain relative key under the tenant's prefix; else Refused."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise Refused(f"not an object key: {str(key)[:80]!r} (1-{MAX_KEY} characters)")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", "..") or not _KEY_PART.fullmatch(part):
            raise Refused(
                f"object key {key[:200]!r} has a part {part[:40]!r} that is empty, . or .., "
                "or holds characters other than letters, digits and . _ - = +"
            )
    mine = prefix(tenant)
    if mine and not key.startswith(mine):
        raise Refused(f"object key {key[:200]!r} is outside tenant {tenant}'s prefix {mine}")
    if not mine and key.startswith(TENANTS_DIR):
        raise Refused(f"object key {key[:200]!r} is another tenant's (the default tenant owns no {TENANTS_DIR})")
    return key


def safe_file_name(name: str) -> str:
    """An uploaded file's name as a key part: its last path part only (as a browser sends
    it), other characters made _, no leading dot."""
    base = re.split(r"[/\\]", name)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._=+-]", "_", base).lstrip(".")[:MAX_FILE_NAME]
    return cleaned or "source"


def objects(value: Any) -> Iterator[tuple[str, str]]:
    """Every (bucket, key) an event names: each record holding both fields, at any depth."""
    if isinstance(value, dict):
        if "bucket" in value and "key" in value:
            yield value["bucket"], value["key"]
        for v in value.values():
            yield from objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from objects(v)


def check_event(event: dict[str, Any], buckets: Collection[str]) -> None:
    """Refused unless the event's tenant and video id are well formed and every object it
    names is in one of reel's buckets under that tenant's prefix. Keys reel builds from an
    event (keys.py) embed its tenant and video id, so those are checked too."""
    tenant = event.get("tenant", DEFAULT)
    check_tenant(tenant)
    try:
        if str(uuid.UUID(event["video_id"])) != event["video_id"]:
            raise ValueError(event["video_id"])
    except (ValueError, TypeError, AttributeError) as exc:
        raise Refused(f"not a video id: {str(event.get('video_id'))[:80]!r}") from exc
    for bucket, key in objects(event):
        if bucket not in buckets:
            raise Refused(f"bucket {str(bucket)[:80]!r} is not one of reel's ({', '.join(sorted(buckets))})")
        check_key(tenant, key)


def known(event: dict[str, Any]) -> str:
    """The event's tenant if it is a well-formed name, else the default (for the dead
    letter and failure of an event refused for its tenant)."""
    tenant = event.get("tenant", DEFAULT)
    try:
        return check_tenant(tenant)
    except Refused:
        return DEFAULT
