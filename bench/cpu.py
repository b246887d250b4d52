"""Where the CPU goes during a run: CPU-seconds per component, read from /proc.

Each process's own time (utime+stime) and its waited-for children's (cutime+cstime):
a worker's ffmpeg runs show up as its children's time, Postgres backends as the
postmaster's. Sampled before and after; processes present at both ends are counted.
"""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
SERVICES = ("splitter", "puller", "transcoder", "pusher", "tracker")


def component(pid: int, comm: str) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for name in SERVICES:
        if f"services.{name}" in cmd:
            return name
    if "kafka" in cmd and comm == "java":
        return "kafka"
    if comm == "weed":
        return "seaweedfs"
    if comm.startswith("postgres"):
        return "postgres"
    if "devstack.supervisor" in cmd:
        return "supervisor"
    return "other"


def snapshot() -> dict[tuple[int, int], tuple[str, float, float]]:
    """(pid, start time) -> (component, own CPU-s, children's CPU-s)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw[raw.rindex(")") + 2 :].split()  # f[0] is field 3 (state)
        own = (int(f[11]) + int(f[12])) / TICK
        children = (int(f[13]) + int(f[14])) / TICK
        pid = int(entry.name)
        out[(pid, int(f[19]))] = (component(pid, comm), own, children)
    return out


def by_component(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """CPU-seconds spent between two snapshots: {component: {"own", "children"}}."""
    totals: dict[str, dict[str, float]] = {}
    for key, (name, own, children) in after.items():
        if key not in before:
            continue
        _, own0, children0 = before[key]
        t = totals.setdefault(name, {"own": 0.0, "children": 0.0})
        t["own"] += own - own0
        t["children"] += children - children0
    return {k: {n: round(v, 1) for n, v in t.items()} for k, t in sorted(totals.items()) if sum(t.values()) > 0.05}
