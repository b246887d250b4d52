"""Scrape targets for a Prometheus watching the embedded stack: each process writes its
/metrics address as a file_sd target under REEL_HOME/prometheus/targets (the supervisor
makes that folder beside a copy of monitoring/prometheus.yml), and removes it when it
exits cleanly. A killed process leaves its file: Prometheus then sees the target down
until the slot restarts and writes its new address over it. Where the folder does not
exist (a cluster: ServiceMonitors find the pods) nothing is written."""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
from pathlib import Path

from reel import PROJECT_ROOT
from reel.settings import Settings

# What the embedded stack's Prometheus loads: the scrape config and the alert rules.
SHIPPED = ("prometheus.yml", "alerts.yml")


def targets_dir(settings: Settings) -> Path:
    return settings.home / "prometheus" / "targets"


def prepare(settings: Settings) -> Path:
    """REEL_HOME/prometheus: the shipped config and rules, and an empty targets folder
    (the addresses of an earlier run say nothing about this one). Returns the config."""
    folder = targets_dir(settings)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in SHIPPED:
        shutil.copyfile(PROJECT_ROOT / "monitoring" / name, folder.parent / name)
    return folder.parent / "prometheus.yml"


def announce(settings: Settings, service: str, slot: int, port: int) -> Path | None:
    folder = targets_dir(settings)
    if not folder.is_dir():
        return None
    path = folder / f"{service}-{slot}.json"
    host = "127.0.0.1" if settings.bind_address in ("0.0.0.0", "") else settings.bind_address
    target = [{"targets": [f"{host}:{port}"], "labels": {"service": service, "slot": str(slot)}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(target))
    tmp.replace(path)  # Prometheus never reads half a file
    atexit.register(lambda: _remove(path, port))
    return path


def _remove(path: Path, port: int) -> None:
    """Only this process's own file: a restarted slot may have written its own since."""
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
        if json.loads(path.read_text())[0]["targets"][0].endswith(f":{port}"):
            path.unlink()
