"""Local scratch folders for a task's files, removed when the task ends."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reel.settings import Settings


@contextlib.contextmanager
def scratch(settings: Settings, name: str) -> Iterator[Path]:
    base = settings.scratch_dir or None
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"reel-{name}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
