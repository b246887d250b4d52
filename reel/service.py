"""What every service process does around its work: settings, logs, metrics, signals."""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reel import discovery, faults, health, logs, metrics
from reel.kafka import kafka_reachable
from reel.pipeline import StageSpec
from reel.settings import Settings, load
from reel.storage import Storage
from reel.task import Deps, Output, Stage, Task
from reel.worker import Worker

log = logging.getLogger(__name__)


@dataclass
class Process:
    name: str
    settings: Settings
    stopping: threading.Event
    health: health.Health

    @property
    def worker_id(self) -> str:
        return f"{self.name}-{self.settings.slot}"


def start(name: str, looping: bool = True) -> Process:
    """Read settings, set up logs, /metrics and the probes, and turn SIGTERM/SIGINT into
    `stopping`. looping: the process has a loop whose turns tell it is live."""
    settings = load()
    faults.set_service(name)
    logs.setup(f"{name}-{settings.slot}", settings.log_level)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    probes = health.Health(
        {"kafka": lambda: kafka_reachable(settings, 3), "storage": Storage.from_settings(settings).ping},
        stalled_s=settings.stalled_s if looping else math.inf,
    )
    port = health.serve(settings.metrics_port, settings.bind_address, probes)
    metrics.UP.labels(name, str(settings.slot)).set(1)
    discovery.announce(settings, name, settings.slot, port)
    log.info("metrics, /healthz and /readyz on %s:%d", settings.bind_address, port)
    return Process(name, settings, stopping, probes)


def check_connections(settings: Settings) -> None:
    """Fail fast, with the cause, when Kafka or object storage cannot be reached."""
    kafka_reachable(settings, 10)
    Storage.from_settings(settings).ping()


def run_stage(
    spec: StageSpec,
    handle: Callable[[Task, Any], list[Output]],
    deps: Callable[[Settings, Storage], Any] = Deps,
    media_seconds: Callable[[dict[str, Any]], float] = lambda _e: 0.0,
) -> None:
    """A worker service, the composition root of every stage: settings, clients, the
    handler's dependencies (`deps(settings, storage)`), the shared loop around it."""
    proc = start(spec.name)
    check_connections(proc.settings)
    storage = Storage.from_settings(proc.settings)
    given = deps(proc.settings, storage)
    stage = Stage.of(spec, lambda task: handle(task, given), media_seconds=media_seconds)
    log.info("%s ready", proc.worker_id)
    sys.exit(Worker(stage, proc.settings, storage, proc.stopping, on_turn=proc.health.tick).run())
