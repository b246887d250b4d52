"""python -m bench: reel against one ffmpeg command; prints a table, writes JSON.

Needs the embedded stack up with its defaults (`reel up`)."""

from __future__ import annotations

import json
import sys

from bench.pipeline import main, report, save
from reel import PROJECT_ROOT, settings


def run() -> None:
    result = main(settings.load(), PROJECT_ROOT / ".reel-cache" / "bench")
    path = PROJECT_ROOT / "bench" / "results" / "latest.json"
    save(result, path)
    print(json.dumps(result, indent=2))
    print(report(result))
    print(f"(written to {path})", file=sys.stderr)


if __name__ == "__main__":
    run()
