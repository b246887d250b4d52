"""A client of the tracker over HTTP with a tenant's bearer token: what `reel --tracker URL
--token T` uses, so a client needs no Kafka or S3 credentials of its own.

Submitting goes through the front door (services/tracker/front_door.py): create the video,
PUT each missing part of the file to its presigned URL, start it. Run again after a cut,
it sends only the parts the store does not hold yet.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reel.storage import sha256_file
from reel.submit import Submission, SubmitError


@dataclass(frozen=True)
class Tracker:
    url: str  # e.g. https://reel.example.com
    token: str

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body); OSError when the tracker cannot be reached."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(json.loads(resp.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, dict(json.loads(exc.read() or b"{}"))
            except ValueError:
                return exc.code, {"error": f"HTTP {exc.code} {exc.reason}"}

    def submit(
        self,
        path: Path,
        profile: str,
        formats: list[str],
        request_id: str | None = None,
        callback_url: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Submission:
        if not path.is_file():
            raise SubmitError(f"no such file: {path}")
        size = path.stat().st_size
        asked = {
            "file_name": path.name,
            "size": size,
            "sha256": sha256_file(path),
            "profile": profile,
            "formats": formats,
            "request_id": request_id,
            "callback_url": callback_url,
        }
        code, created = self.call("POST", "/videos", asked)
        if code not in (200, 201):
            raise SubmitError(f"the tracker refused the video ({code}): {reason(created)}")
        upload = created["upload"]
        if upload is None:  # already started, or the tenant already stored this file
            if progress:
                progress(size)
        else:
            send_parts(path, upload, progress)
        code, started = self.call("POST", f"/videos/{created['video_id']}/start")
        if code != 202:
            raise SubmitError(f"the tracker did not start the video ({code}): {reason(started)}")
        return Submission(created["video_id"], bool(created["created"]), int(started["submitted_ms"]))


def send_parts(path: Path, upload: dict[str, Any], progress: Callable[[int], None] | None) -> None:
    """PUT each part the store lacks to its presigned URL (the others count as sent)."""
    part_size = int(upload["part_size"])
    if progress:
        progress(sum(min(part_size, path.stat().st_size - (n - 1) * part_size) for n in upload["done"]))
    with open(path, "rb") as f:
        for part in upload["parts"]:
            f.seek((part["number"] - 1) * part_size)
            data = f.read(part["size"])
            req = urllib.request.Request(part["url"], data=data, method="PUT")
            req.add_header("Content-Type", "application/octet-stream")
            try:
                with urllib.request.urlopen(req, timeout=300) as resp:
                    resp.read()
            except urllib.error.HTTPError as exc:
                raise SubmitError(
                    f"the store refused part {part['number']} ({exc.code}); run it again to resume"
                ) from None
            if progress:
                progress(len(data))


def reason(body: dict[str, Any]) -> str:
    detail = "; ".join(str(d.get("msg")) for d in body.get("detail", []) if isinstance(d, dict))
    return str(body.get("error", "no reason given")) + (f": {detail}" if detail else "")
