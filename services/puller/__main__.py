"""Run the puller: python -m services.puller"""

from reel.kafka import admin_client, member_queues
from reel.pipeline import PULLER, TRANSCODER
from reel.segment import media_seconds
from reel.service import run_stage
from reel.settings import Settings
from reel.storage import Storage
from services.puller.handler import Deps, handle


def deps(settings: Settings, storage: Storage) -> Deps:
    """Each pulled span goes to its lane unless the transcoders' queues (their consumer
    group and its lag, asked of the broker) say another is less loaded."""
    admin = admin_client(settings)
    return Deps(settings, storage, lambda: member_queues(admin, TRANSCODER.group, TRANSCODER.input))


if __name__ == "__main__":
    run_stage(PULLER, handle, deps, media_seconds=media_seconds)
