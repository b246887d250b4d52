"""The local supervisor: runs each worker kind as processes with slot ids 0..N-1, restarts
any that exit, and drains them all on SIGTERM.

Each worker runs in its own process group, so a fault-injected SIGKILL of the group
takes its ffmpeg children too but never a sibling. The slot id names the worker's
stable transactional.id, as a StatefulSet ordinal does in Kubernetes.

With REEL_AUTOSCALE=1 it also runs the autoscaler (devstack/autoscaler.py) and runs the
counts it writes, as a StatefulSet controller runs its `replicas`: out, a new slot with
the next ordinal; in, the highest ordinal gets SIGTERM - the worker process alone, never
its ffmpeg - stops taking tasks, finishes the one it holds, commits, leaves the group and
exits; it is not restarted. An ordinal wanted back while it drains starts again once it
has exited (two processes with one transactional.id would fence each other).
With REEL_NODE_CPU, slot i of every kind runs in the cgroup of node i (devstack/nodes.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack import nodes
from devstack.procs import stop
from reel import PROJECT_ROOT, discovery, logs, replicas
from reel.pipeline import WORKER_KINDS
from reel.settings import Settings, load

log = logging.getLogger("devstack.supervisor")

MARGIN_S = 30.0  # past a worker's own drain deadline, before it is killed


@dataclass
class Slot:
    kind: str
    slot: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)
    wanted: bool = True  # False: draining, not to be restarted

    @property
    def module(self) -> str:
        return "devstack.autoscaler" if self.kind == "autoscaler" else f"services.{self.kind}"


def initial_sizes(settings: Settings) -> dict[str, int]:
    if settings.autoscale:  # the autoscaler takes it from here
        return {k: settings.autoscale_min for k in WORKER_KINDS}
    return {k: settings.workers_per_kind for k in WORKER_KINDS} | {"transcoder": settings.transcoders}


def fleet(settings: Settings) -> list[Slot]:
    size = initial_sizes(settings)
    slots = [Slot(k, i) for k in WORKER_KINDS for i in range(size[k])]
    return slots + [Slot("tracker", 0)] + ([Slot("autoscaler", 0)] if settings.autoscale else [])


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slots = fleet(settings)
        self.stopping = False
        self.logdir = settings.home / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.nodes = nodes.Nodes(settings.home, settings.node_cpu, settings.stack_cpu) if settings.node_cpu else None
        replicas.clear(settings.home)  # counts of an earlier run say nothing about this one
        discovery.prepare(settings)

    def group_of(self, slot: Slot) -> Path | None:
        if self.nodes is None:
            return None
        return self.nodes.node(slot.slot) if slot.kind in WORKER_KINDS else self.nodes.stack()

    def spawn(self, slot: Slot) -> None:
        env = {**os.environ, "REEL_SLOT": str(slot.slot), "REEL_HOME": str(self.settings.home)}
        out = open(self.logdir / f"{slot.kind}-{slot.slot}.log", "ab")  # noqa: SIM115
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", slot.module],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
            preexec_fn=nodes.joining(self.group_of(slot)),  # noqa: PLW1509 - the supervisor runs no threads
        )
        out.close()
        slot.started_at = time.monotonic()
        log.info("started %s-%d pid %d", slot.kind, slot.slot, slot.proc.pid)

    def check(self, slot: Slot) -> None:
        """Restart a wanted slot whose process exited, with a growing delay for crash
        loops; forget one that drained."""
        now = time.monotonic()
        if slot.proc is None:
            if now >= slot.next_start:
                self.spawn(slot)
            return
        code = slot.proc.poll()
        if code is None:
            return
        ran = now - slot.started_at
        if not slot.wanted:
            log.info("%s-%d drained and exited with %s: scaled in", slot.kind, slot.slot, code)
            self.slots.remove(slot)
            return
        slot.restarts = 0 if ran > 60 else slot.restarts + 1
        delay = 0.0 if code == 0 else min(0.5 * 2 ** min(slot.restarts, 5), 15.0)
        log.warning("%s-%d exited with %s after %.1fs; restart in %.1fs", slot.kind, slot.slot, code, ran, delay)
        slot.proc = None
        slot.next_start = now + delay

    def scale(self, kind: str, count: int) -> None:
        """Run ordinals 0..count-1 of a kind: add the missing, drain the ones above."""
        have = {s.slot: s for s in self.slots if s.kind == kind}
        for i in range(count):
            if i not in have:
                self.slots.append(Slot(kind, i))
                log.info("%s-%d: scaled out", kind, i)
            elif not have[i].wanted:
                have[i].wanted = True  # it restarts once its drain has ended
                log.info("%s-%d: wanted again", kind, i)
        for i, s in have.items():
            if i >= count and s.wanted:
                s.wanted = False
                if s.proc is not None and s.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(s.proc.pid, signal.SIGTERM)  # the worker, not its group: ffmpeg finishes
                    log.info("%s-%d: scaling in, draining pid %d", kind, i, s.proc.pid)
                elif s.proc is None:
                    self.slots.remove(s)

    def follow_autoscaler(self) -> None:
        for kind, count in replicas.read(self.settings.home).items():
            if kind in WORKER_KINDS:
                self.scale(kind, count)

    def write_state(self) -> None:
        state = [
            {
                "kind": s.kind,
                "slot": s.slot,
                "pid": s.proc.pid if s.proc else None,
                "restarts": s.restarts,
                "wanted": s.wanted,
                "node": s.slot if self.nodes is not None and s.kind in WORKER_KINDS else None,
            }
            for s in sorted(self.slots, key=lambda s: (s.kind, s.slot))
        ]
        path = self.settings.home / "services.json"
        path.with_suffix(".tmp").write_text(json.dumps(state))
        path.with_suffix(".tmp").replace(path)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        while not self.stopping:
            if self.settings.autoscale:
                self.follow_autoscaler()
            for slot in list(self.slots):
                self.check(slot)
            self.write_state()
            time.sleep(0.5)
        self.drain()

    def drain(self) -> None:
        """SIGTERM every process (the process alone: its ffmpeg finishes the task), then
        what is left after the workers' own drain deadline is killed with its group."""
        log.info("draining %d processes", len(self.slots))
        running = [s.proc for s in self.slots if s.proc and s.proc.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_s + MARGIN_S
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(proc.pid, grace=0)
        (self.settings.home / "services.json").unlink(missing_ok=True)
        replicas.clear(self.settings.home)
        if self.nodes is not None:
            self.nodes.remove()
        log.info("all processes stopped")


def main() -> None:
    settings = load()
    logs.setup("supervisor", settings.log_level)
    Supervisor(settings).run()


if __name__ == "__main__":
    main()
