"""Run the splitter: python -m services.splitter

The composition root: the clients and the stage are built here, nowhere else."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from reel.kafka import member_partitions
from reel.pipeline import SPLITTER, TRANSCODER
from reel.service import run_stage
from reel.settings import Settings
from reel.storage import Storage
from reel.task import Stage
from services.splitter.handler import Deps, handle


def make_stage(settings: Settings, storage: Storage) -> Stage:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deps = Deps(settings, storage, lambda: member_partitions(admin, TRANSCODER.group, TRANSCODER.input))
    return Stage.of(SPLITTER, lambda t: handle(t, deps))


if __name__ == "__main__":
    run_stage(SPLITTER.name, make_stage)
