"""What a client of the e2e fleet does: the reel CLI as a user runs it, and the tracker's
status over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from reel import PROJECT_ROOT
from reel.settings import Settings
from tests.e2e.conftest import E2E_ENV, TOKENS

API = f"http://127.0.0.1:{E2E_ENV['REEL_TRACKER_PORT']}"


def authorized(
    url: str, tenant: str = "default", method: str = "GET", data: bytes | None = None
) -> urllib.request.Request:
    """A request to the tracker with the tenant's bearer token."""
    headers = {"Authorization": f"Bearer {TOKENS[tenant]}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    return urllib.request.Request(url, data=data, method=method, headers=headers)


def call(path: str, tenant: str = "default", method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """(status, JSON body) of one tracker route, as the tenant."""
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(authorized(API + path, tenant, method, data), timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def cli(
    settings: Settings,
    *args: str,
    tracker_port: int = int(E2E_ENV["REEL_TRACKER_PORT"]),
    merged: bool = False,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """merged: stderr into stdout, as a terminal shows both; env: more REEL_ settings."""
    env = {
        **os.environ,
        "REEL_HOME": str(settings.home),
        "REEL_KAFKA_PORT": str(settings.kafka_port),
        "REEL_S3_PORT": str(settings.s3_port),
        "REEL_S3_ACCESS_KEY": settings.s3_access_key,
        "REEL_S3_SECRET_KEY": settings.s3_secret_key,
        "REEL_TRACKER_PORT": str(tracker_port),
        "REEL_TRACKER_TOKEN": E2E_ENV["REEL_TRACKER_TOKEN"],  # the default tenant's, as the fleet knows it
        "COLUMNS": "200",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "reel.cli", *args],
        env=env,
        text=True,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        timeout=600,
    )


def status_when(video_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
    """The video's status once the tracker has projected it into `state`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(authorized(f"{API}/videos/{video_id}"), timeout=10) as resp:
                view = json.loads(resp.read())
            if view["state"] == state:
                return dict(view)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # 404: not projected yet
                raise
        assert time.monotonic() < deadline, f"the tracker never showed {video_id} {state}"
        time.sleep(0.2)
