"""Run the splitter: python -m services.splitter"""

from confluent_kafka.admin import AdminClient

from reel.kafka import member_partitions
from reel.pipeline import SPLITTER, TRANSCODER
from reel.service import run_stage
from reel.settings import Settings
from reel.storage import Storage
from services.splitter.handler import Deps, handle


def deps(settings: Settings, storage: Storage) -> Deps:
    """Its plan follows the live transcoders: their consumer group, asked of the broker."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    return Deps(settings, storage, lambda: member_partitions(admin, TRANSCODER.group, TRANSCODER.input))


if __name__ == "__main__":
    run_stage(SPLITTER, handle, deps)
