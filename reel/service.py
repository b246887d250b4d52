"""What every service process does around its work: settings, logs, metrics, signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from reel import faults, logs, metrics
from reel.settings import Settings, load
from reel.storage import Storage
from reel.worker import Stage, Worker

log = logging.getLogger(__name__)


@dataclass
class Process:
    name: str
    settings: Settings
    stopping: threading.Event

    @property
    def worker_id(self) -> str:
        return f"{self.name}-{self.settings.slot}"


def start(name: str) -> Process:
    """Read settings, set up logs and /metrics, and turn SIGTERM/SIGINT into `stopping`."""
    settings = load()
    faults.set_service(name)
    logs.setup(f"{name}-{settings.slot}", settings.log_level)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    port = metrics.serve(settings.metrics_port)
    metrics.UP.labels(name, str(settings.slot)).set(1)
    log.info("metrics on 127.0.0.1:%d", port)
    return Process(name, settings, stopping)


def check_connections(settings: Settings) -> None:
    """Fail fast, with the cause, when Kafka or object storage cannot be reached."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.list_topics(timeout=10)
    Storage.from_settings(settings).ping()


def run_stage(name: str, make_stage: Callable[[Settings, Storage], Stage]) -> None:
    """A worker service: the shared loop around this service's handler."""
    proc = start(name)
    check_connections(proc.settings)
    storage = Storage.from_settings(proc.settings)
    stage = make_stage(proc.settings, storage)
    log.info("%s ready", proc.worker_id)
    sys.exit(Worker(stage, proc.settings, storage, proc.stopping).run())
