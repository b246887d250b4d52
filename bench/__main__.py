"""python -m bench [pipeline [PAIRS]|projection|chaos|autoscale [quick|curve [SIZES]|burst]]: prints
a table, writes JSON to bench/results/.

pipeline (default): reel against one ffmpeg command, PAIRS back-to-back pairs (default 3).
projection: the tracker's events per second over 1,000 videos' worth of events. chaos:
videos under random SIGKILLs against the same videos undisturbed. These need the embedded stack
up (`reel up`). autoscale: scale-out and autoscaling on simulated small nodes, on a stack of
its own (root: cgroups); `autoscale curve` measures the scale-out curve only and keeps the
stored burst, `autoscale curve 1,8` only those sizes (written beside quick runs, not as results),
`autoscale burst` the burst only, keeping the stored curve."""

from __future__ import annotations

import json
import sys

from bench import autoscale, chaos, pipeline, projection
from reel import PROJECT_ROOT, settings


def run(which: str) -> None:
    work = PROJECT_ROOT / ".reel-cache" / "bench"
    s = settings.load()
    if which == "autoscale":
        mode = sys.argv[2] if len(sys.argv) > 2 else "full"
        sizes = tuple(int(n) for n in sys.argv[3].split(",")) if len(sys.argv) > 3 else ()
        results = PROJECT_ROOT / "bench" / "results" / "autoscale.json"
        stored = json.loads(results.read_text()) if results.exists() else None
        result = autoscale.main(work / "autoscale", mode, sizes, stored)
        # A quick or partial run only shows the steps work: its figures are not results.
        path = work / "autoscale" / f"{mode}.json" if mode == "quick" or sizes else results
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
        usage = "python -m bench [pipeline [PAIRS]|projection|chaos|autoscale [quick|curve [SIZES]|burst]]"
        sys.exit(f"usage: {usage}, not {which!r}")
    run(which)
