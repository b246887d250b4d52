"""python -m bench [pipeline [PAIRS]|projection|chaos|autoscale [quick]]: prints a table, writes JSON to bench/results/.

pipeline (default): reel against one ffmpeg command, PAIRS back-to-back pairs (default 3).
projection: the tracker's events per second over 1,000 videos' worth of events. chaos:
videos under random SIGKILLs against the same videos undisturbed. These need the embedded stack
up (`reel up`). autoscale: scale-out and autoscaling on simulated small nodes, on a stack of
its own (root: cgroups)."""

from __future__ import annotations

import json
import sys

from bench import autoscale, chaos, pipeline, projection
from reel import PROJECT_ROOT, settings


def run(which: str) -> None:
    work = PROJECT_ROOT / ".reel-cache" / "bench"
    s = settings.load()
    if which == "autoscale":
        quick = sys.argv[2:] == ["quick"]
        result = autoscale.main(work / "autoscale", quick)
        # A quick run only shows the steps work: its figures are not results.
        path = work / "autoscale" / "quick.json" if quick else PROJECT_ROOT / "bench" / "results" / "autoscale.json"
        text = autoscale.report(result)
    elif which == "chaos":
        result = chaos.main(s, work)
        path = PROJECT_ROOT / "bench" / "results" / "chaos.json"
        text = chaos.report(result)
    elif which == "projection":
        result = projection.main(s, work)
        path = PROJECT_ROOT / "bench" / "results" / "projection.json"
        text = projection.report(result)
    else:
        result = pipeline.main(s, work, pairs=int(sys.argv[2]) if len(sys.argv) > 2 else 3)
        path = PROJECT_ROOT / "bench" / "results" / "latest.json"
        text = pipeline.report(result)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(text)
    print(f"(written to {path})", file=sys.stderr)


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "pipeline"
    if which not in ("pipeline", "projection", "chaos", "autoscale"):
        sys.exit(f"usage: python -m bench [pipeline [PAIRS]|projection|chaos|autoscale [quick]], not {which!r}")
    run(which)
