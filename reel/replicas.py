"""How many replicas of each worker kind the fleet is heading for: the autoscaler's desired
counts. Locally the autoscaler of `reel up` writes them to `$REEL_HOME/replicas.json` and
the supervisor runs that many; in Kubernetes they are each StatefulSet's `spec.replicas`,
which its HPA sets (reel/k8s_replicas.py). The splitter sizes a video for them.
"""

from __future__ import annotations

import json
from pathlib import Path

FILE = "replicas.json"


def read(home: Path) -> dict[str, int]:
    """The desired count per kind; {} when no autoscaler runs (or it has not decided yet)."""
    try:
        data = json.loads((home / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.get("replicas", {}).items()}


def write(home: Path, replicas: dict[str, int], at: float) -> None:
    path = home / FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"at": at, "replicas": replicas}))
    tmp.replace(path)


def clear(home: Path) -> None:
    (home / FILE).unlink(missing_ok=True)
