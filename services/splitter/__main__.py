"""Run the splitter: python -m services.splitter"""

import logging
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from reel import replicas
from reel.kafka import admin_client, group_lag, member_partitions
from reel.pipeline import PULLER, SPLITTER, TRANSCODER
from reel.service import run_stage
from reel.settings import Settings
from reel.storage import Storage
from services.splitter.handler import Deps, handle

log = logging.getLogger(__name__)


def heading_for(settings: Settings) -> Callable[[], int]:
    """The transcoders the autoscaler wants: in Kubernetes the StatefulSet's replicas (its
    HPA sets them), else what the local autoscaler of `reel up` wrote."""
    if settings.kubernetes_namespace:
        from reel.k8s_replicas import StatefulSets  # only where it runs in a cluster

        sets = StatefulSets(settings.kubernetes_namespace)
        return lambda: sets.replicas(settings.transcoder_statefulset).desired
    return lambda: replicas.read(settings.home).get(TRANSCODER.name, 0)


def unsplit(admin: AdminClient, group: str = SPLITTER.group, topic: str = SPLITTER.input) -> Callable[[], int]:
    """Videos requested and not yet split (the splitters' lag, the one in hand included);
    a lookup that fails counts none waiting, so the video is split as if alone."""

    def count() -> int:
        try:
            return sum(group_lag(admin, group, topic, timeout=5).values())
        except (KafkaException, TimeoutError) as exc:
            log.warning("the splitters' lag could not be read (%s): split as if no other video waits", exc)
            return 1

    return count


def deps(settings: Settings, storage: Storage) -> Deps:
    """Its plan follows the live transcoders (their consumer group, asked of the broker)
    and, autoscaled, the fleet they are heading for (larger while other videos wait to be
    split); its pull requests go to the live pullers in turn."""
    admin = admin_client(settings)

    def partitions() -> int:
        meta = admin.list_topics(TRANSCODER.input, timeout=10).topics.get(TRANSCODER.input)
        return len(meta.partitions) if meta is not None and meta.partitions else settings.kafka_partitions

    return Deps(
        settings,
        storage,
        lambda: member_partitions(admin, TRANSCODER.group, TRANSCODER.input),
        heading_for=heading_for(settings),
        unsplit=unsplit(admin),
        partitions=partitions,
        pullers=lambda: member_partitions(admin, PULLER.group, PULLER.input),
    )


if __name__ == "__main__":
    run_stage(SPLITTER, handle, deps)
