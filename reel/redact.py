"""Failure reasons and log lines without credentials (pure).

ffmpeg and ffprobe print the URL they read, and the services give them presigned URLs:
the query carries `X-Amz-Credential` (the access key) and `X-Amz-Signature`, a working
link for its lifetime. A reason travels far - Postgres, `video.failed`, the dead letter,
the status endpoint, callbacks - so every URL in it is reduced to the bucket and key it
names, which is also what an operator needs to find the object.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

URL = re.compile(r"\b(?:https?|s3)://[^\s'\"<>|`]*[^\s'\"<>|`:,.;)\]]")  # not its trailing punctuation
# What survives a URL that was cut short, or a query printed on its own.
AMZ_PARAM = re.compile(r"\s?X-Amz-[A-Za-z-]+=[^&\s'\"]*&?")
# A virtual-host-style S3 address names its bucket in the host.
VIRTUAL_HOST = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]*?)\.s3[.-]")


def object_of(url: str) -> str:
    """`bucket/key` of an object URL (path or virtual-host style), query dropped."""
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    host = VIRTUAL_HOST.match(parts.hostname or "")
    if host:
        return f"{host['bucket']}/{path}" if path else host["bucket"]
    return path or (parts.hostname or "")


def redact(text: str) -> str:
    """Every URL in `text` reduced to its bucket and key; no signature survives."""
    return AMZ_PARAM.sub("", URL.sub(lambda m: object_of(m.group(0)), text))
