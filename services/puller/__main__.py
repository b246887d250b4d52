"""Run the puller: python -m services.puller

The composition root: the clients and the stage are built here, nowhere else."""

from __future__ import annotations

from reel.pipeline import PULLER
from reel.segment import media_seconds
from reel.service import run_stage
from reel.settings import Settings
from reel.storage import Storage
from reel.task import Deps, Stage
from services.puller.handler import handle


def make_stage(settings: Settings, storage: Storage) -> Stage:
    deps = Deps(settings, storage)
    return Stage.of(PULLER, lambda t: handle(t, deps), media_seconds=media_seconds)


if __name__ == "__main__":
    run_stage(PULLER.name, make_stage)
