"""Simulated nodes (REEL_NODE_CPU): cgroup v1 `cpu` groups with a fixed CPU quota, so a
fleet of small machines runs on one. Node i holds slot i of every worker kind that runs
there and all their ffmpeg children (a child stays in its parent's group); the stack -
Kafka, SeaweedFS, Postgres, the tracker, the supervisor's autoscaler - has a capped group
of its own (REEL_STACK_CPU), so it cannot lend the nodes its share.

Only root on a machine with a writable cgroup v1 `cpu` hierarchy can do this; elsewhere
`available()` says no and nothing is limited (a figure that depends on it must say so).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


def available(root: Path = ROOT) -> bool:
    return (root / "cgroup.procs").exists() and os.access(root, os.W_OK)


class Nodes:
    """The groups of one embedded stack (named after its home, so two stacks never share)."""

    def __init__(self, home: Path, node_cpu: float, stack_cpu: float, root: Path = ROOT) -> None:
        tag = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]
        self.base = root / f"reel-{tag}"
        self.node_cpu = node_cpu
        self.stack_cpu = stack_cpu

    def group(self, name: str) -> Path:
        """The group `name` (node-<i> or stack), made with its quota if it is not there."""
        path = self.base / name
        if not path.exists():
            path.mkdir(parents=True)
            cpu = self.stack_cpu if name == "stack" else self.node_cpu
            (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpu * PERIOD_US))))
        return path

    def node(self, slot: int) -> Path:
        return self.group(f"node-{slot}")

    def stack(self) -> Path:
        return self.group("stack")

    def throttled(self) -> dict[str, int]:
        """cpu.stat's nr_throttled per group: above 0, the quota was enforced."""
        out = {}
        for path in sorted(self.base.glob("*/cpu.stat")):
            fields = dict(line.split() for line in path.read_text().splitlines())
            out[path.parent.name] = int(fields.get("nr_throttled", 0))
        return out

    def remove(self, wait_s: float = 0.0) -> None:
        """Drop the groups no process is in any more, waiting up to wait_s for the last ones
        to leave (a stopped process's children may outlive it briefly); a group a process
        stays in is left alone."""
        deadline = time.monotonic() + wait_s
        for path in [*sorted(p for p in self.base.glob("*") if p.is_dir()), self.base]:
            while path.exists() and members(path) and time.monotonic() < deadline:
                time.sleep(0.1)
            if path.exists() and not members(path):
                with contextlib.suppress(OSError):  # busy: a process is still leaving it
                    path.rmdir()


def joining(group: Path | None) -> Callable[[], None] | None:
    """A preexec_fn that moves the new process into `group` before it runs anything, so
    every process it starts is born there too."""
    if group is None:
        return None
    procs = str(group / "cgroup.procs")

    def join() -> None:
        with open(procs, "w") as f:
            f.write("0")  # 0: the writing process itself

    return join


def members(group: Path) -> list[int]:
    return [int(p) for p in (group / "cgroup.procs").read_text().split()]


def leave(root: Path = ROOT) -> None:
    """Move this process back to the root group (no quota): work after a measured run."""
    if available(root):
        (root / "cgroup.procs").write_text(str(os.getpid()))
