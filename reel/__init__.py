"""reel: the shared library every service uses (settings, contract, loop, storage, media)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
