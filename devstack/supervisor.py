"""The local supervisor: runs each worker kind as N processes with slot ids 0..N-1,
restarts any that exit, and drains them all on SIGTERM.

Each worker runs in its own process group, so a fault-injected SIGKILL of the group
takes its ffmpeg children too but never a sibling. The slot id names the worker's
stable transactional.id, as a StatefulSet ordinal does in Kubernetes.
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

from devstack.procs import stop
from reel import PROJECT_ROOT, logs
from reel.pipeline import WORKER_KINDS
from reel.settings import Settings, load

log = logging.getLogger("devstack.supervisor")

GRACE_S = 150.0  # above the longest segment's encode: a drained worker finishes its task


@dataclass
class Slot:
    kind: str
    slot: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


def fleet(settings: Settings) -> list[Slot]:
    size = {k: settings.workers_per_kind for k in WORKER_KINDS} | {"transcoder": settings.transcoders}
    slots = [Slot(k, i) for k in WORKER_KINDS for i in range(size[k])]
    return slots + [Slot("tracker", 0)]


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slots = fleet(settings)
        self.stopping = False
        self.logdir = settings.home / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)

    def spawn(self, slot: Slot) -> None:
        env = {**os.environ, "REEL_SLOT": str(slot.slot), "REEL_HOME": str(self.settings.home)}
        out = open(self.logdir / f"{slot.kind}-{slot.slot}.log", "ab")  # noqa: SIM115
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{slot.kind}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        out.close()
        slot.started_at = time.monotonic()
        log.info("started %s-%d pid %d", slot.kind, slot.slot, slot.proc.pid)

    def check(self, slot: Slot) -> None:
        """Restart a slot whose process exited, with a growing delay for crash loops."""
        now = time.monotonic()
        if slot.proc is None:
            if now >= slot.next_start:
                self.spawn(slot)
            return
        code = slot.proc.poll()
        if code is None:
            return
        ran = now - slot.started_at
        slot.restarts = 0 if ran > 60 else slot.restarts + 1
        delay = min(0.5 * 2 ** min(slot.restarts, 5), 15.0)
        log.warning("%s-%d exited with %s after %.1fs; restart in %.1fs", slot.kind, slot.slot, code, ran, delay)
        slot.proc = None
        slot.next_start = now + delay

    def write_state(self) -> None:
        state = [
            {"kind": s.kind, "slot": s.slot, "pid": s.proc.pid if s.proc else None, "restarts": s.restarts}
            for s in self.slots
        ]
        path = self.settings.home / "services.json"
        path.with_suffix(".tmp").write_text(json.dumps(state))
        path.with_suffix(".tmp").replace(path)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        while not self.stopping:
            for slot in self.slots:
                self.check(slot)
            self.write_state()
            time.sleep(0.5)
        self.drain()

    def drain(self) -> None:
        log.info("draining %d processes", len(self.slots))
        running = [s.proc for s in self.slots if s.proc and s.proc.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(proc.pid, grace=0)
        (self.settings.home / "services.json").unlink(missing_ok=True)
        log.info("all processes stopped")


def main() -> None:
    settings = load()
    logs.setup("supervisor", settings.log_level)
    Supervisor(settings).run()


if __name__ == "__main__":
    main()
